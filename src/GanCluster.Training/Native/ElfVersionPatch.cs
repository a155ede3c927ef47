using System.Buffers.Binary;
using System.Text;

namespace GanCluster.Training.Native;

/// <summary>
/// Rewrites one symbol-version requirement in an ELF64 shared library's .gnu.version_r section.
/// Used for libLibTorchSharp.so 0.107.0, which asks for GLIBCXX_3.4.32 (Debian 12 stops at 3.4.30)
/// only for std::ios_base_library_init(), a link-time marker that is never called.
/// </summary>
public static class ElfVersionPatch
{
    const uint ShtGnuVerneed = 0x6ffffffe;

    /// <summary>The version requirements listed in .gnu.version_r: needed file, version name and its vna_hash.</summary>
    public static IReadOnlyList<(string File, string Version, uint Hash)> ListRequirements(ReadOnlySpan<byte> elf)
    {
        var result = new List<(string, string, uint)>();
        Walk(elf, (file, version, _, _, hash) => result.Add((file, version, hash)));
        return result;
    }

    /// <summary>
    /// Returns a copy of <paramref name="elf"/> whose requirement <paramref name="from"/> is replaced by
    /// <paramref name="to"/>: the vna_name offset and vna_hash of that one entry change, nothing else.
    /// <paramref name="to"/> must already be one of the library's requirements (its name is then in .dynstr).
    /// Returns null when <paramref name="from"/> is not required.
    /// </summary>
    public static byte[]? Rewrite(ReadOnlySpan<byte> elf, string from, string to)
    {
        int fromAux = -1;
        uint toNameOffset = uint.MaxValue;
        Walk(elf, (_, version, auxOffset, nameOffset, _) =>
        {
            if (version == from) fromAux = auxOffset;
            if (version == to) toNameOffset = nameOffset;
        });
        if (fromAux < 0) return null;
        if (toNameOffset == uint.MaxValue)
            throw new InvalidDataException($"cannot rewrite {from}: {to} is not among the library's version requirements");

        var copy = elf.ToArray();
        // Elf64_Vernaux: vna_hash u32 @0, vna_flags u16 @4, vna_other u16 @6, vna_name u32 @8, vna_next u32 @12
        BinaryPrimitives.WriteUInt32LittleEndian(copy.AsSpan(fromAux), ElfHash(to));
        BinaryPrimitives.WriteUInt32LittleEndian(copy.AsSpan(fromAux + 8), toNameOffset);
        return copy;
    }

    /// <summary>The SysV ELF hash that vna_hash stores.</summary>
    public static uint ElfHash(string name)
    {
        uint h = 0;
        foreach (var c in Encoding.ASCII.GetBytes(name))
        {
            h = (h << 4) + c;
            var g = h & 0xf0000000;
            if (g != 0) h ^= g >> 24;
            h &= ~g;
        }
        return h;
    }

    delegate void Visitor(string file, string version, int auxOffset, uint nameOffset, uint hash);

    static void Walk(ReadOnlySpan<byte> elf, Visitor visit)
    {
        if (elf.Length < 64 || elf[0] != 0x7f || elf[1] != (byte)'E' || elf[2] != (byte)'L' || elf[3] != (byte)'F')
            throw new InvalidDataException("not an ELF file");
        if (elf[4] != 2 || elf[5] != 1)
            throw new InvalidDataException("only little-endian ELF64 is supported");

        var shoff = checked((int)BinaryPrimitives.ReadUInt64LittleEndian(elf[0x28..]));
        int shentsize = BinaryPrimitives.ReadUInt16LittleEndian(elf[0x3A..]);
        int shnum = BinaryPrimitives.ReadUInt16LittleEndian(elf[0x3C..]);

        for (var i = 0; i < shnum; i++)
        {
            var sh = elf.Slice(shoff + i * shentsize, shentsize);
            if (BinaryPrimitives.ReadUInt32LittleEndian(sh[4..]) != ShtGnuVerneed) continue;

            var offset = checked((int)BinaryPrimitives.ReadUInt64LittleEndian(sh[24..]));
            var link = (int)BinaryPrimitives.ReadUInt32LittleEndian(sh[40..]);
            var count = (int)BinaryPrimitives.ReadUInt32LittleEndian(sh[44..]);
            var strSh = elf.Slice(shoff + link * shentsize, shentsize);
            var strOffset = checked((int)BinaryPrimitives.ReadUInt64LittleEndian(strSh[24..]));

            var vn = offset;
            for (var n = 0; n < count; n++)
            {
                // Elf64_Verneed: vn_version u16, vn_cnt u16, vn_file u32, vn_aux u32, vn_next u32
                int cnt = BinaryPrimitives.ReadUInt16LittleEndian(elf[(vn + 2)..]);
                var file = ReadString(elf, strOffset + (int)BinaryPrimitives.ReadUInt32LittleEndian(elf[(vn + 4)..]));
                var aux = vn + (int)BinaryPrimitives.ReadUInt32LittleEndian(elf[(vn + 8)..]);
                for (var a = 0; a < cnt; a++)
                {
                    var nameOffset = BinaryPrimitives.ReadUInt32LittleEndian(elf[(aux + 8)..]);
                    visit(file, ReadString(elf, strOffset + (int)nameOffset), aux, nameOffset, BinaryPrimitives.ReadUInt32LittleEndian(elf[aux..]));
                    aux += (int)BinaryPrimitives.ReadUInt32LittleEndian(elf[(aux + 12)..]);
                }
                vn += (int)BinaryPrimitives.ReadUInt32LittleEndian(elf[(vn + 12)..]);
            }
            return;
        }
    }

    static string ReadString(ReadOnlySpan<byte> elf, int at)
    {
        var end = elf[at..].IndexOf((byte)0);
        return Encoding.ASCII.GetString(elf.Slice(at, end));
    }
}
