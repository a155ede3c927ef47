using System.Buffers.Binary;
using System.Text;

namespace GanCluster.Tests.Shared;

/// <summary>
/// Reads TensorBoard event files without TensorBoard (not installable here): the TFRecord framing (u64 length, masked
/// CRC32C of the length, the data, masked CRC32C of the data; both CRCs are checked) and as much of the Event protobuf
/// as the tests need: wall time, step, file version, and each summary value's tag with its simple_value or image.
/// Written from the formats' specifications (tensorflow/core/lib/io/record_writer.cc's framing,
/// tensorflow/core/util/event.proto and framework/summary.proto's field numbers), independent of the writer under test.
/// </summary>
public static class TfEvents
{
    public sealed record Image(int Height, int Width, int Colorspace, byte[] Encoded);

    /// <summary>One summary value of an event: a scalar (<see cref="Value"/>) or an image.</summary>
    public sealed record Point(string File, long Step, double WallTime, string Tag, float? Value, Image? Image);

    public sealed record Event(double WallTime, long Step, string? FileVersion, IReadOnlyList<(string Tag, float? Value, Image? Image)> Values);

    /// <summary>Every event of every event file under <paramref name="folder"/>, files in name order (as TensorBoard reads them).</summary>
    public static List<Point> ReadFolder(string folder) =>
        [.. Directory.GetFiles(folder, "events.out.tfevents.*", SearchOption.AllDirectories).Order(StringComparer.Ordinal)
            .SelectMany(f => ReadFile(f).SelectMany(e => e.Values.Select(v => new Point(f, e.Step, e.WallTime, v.Tag, v.Value, v.Image))))];

    public static List<Event> ReadFile(string path)
    {
        var bytes = File.ReadAllBytes(path);
        var events = new List<Event>();
        var at = 0;
        while (at < bytes.Length)
        {
            if (bytes.Length - at < 12) throw new InvalidDataException($"{path}: {bytes.Length - at} stray bytes at offset {at}");
            var header = bytes.AsSpan(at, 8);
            var length = BinaryPrimitives.ReadUInt64LittleEndian(header);
            if (BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(at + 8, 4)) != MaskedCrc(header))
                throw new InvalidDataException($"{path}: bad length CRC at offset {at}");
            if (length > (ulong)(bytes.Length - at - 16)) throw new InvalidDataException($"{path}: record at offset {at} runs past the end ({length} bytes)");
            var data = bytes.AsSpan(at + 12, (int)length);
            if (BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(at + 12 + (int)length, 4)) != MaskedCrc(data))
                throw new InvalidDataException($"{path}: bad data CRC at offset {at}");
            events.Add(ParseEvent(data));
            at += 16 + (int)length;
        }
        return events;
    }

    /// <summary>CRC32C (Castagnoli, reflected 0x82F63B78), bit by bit: slow and obviously the definition.</summary>
    public static uint Crc32C(ReadOnlySpan<byte> data)
    {
        var crc = 0xFFFFFFFFu;
        foreach (var b in data)
        {
            crc ^= b;
            for (var k = 0; k < 8; k++) crc = (crc & 1) != 0 ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
        }
        return ~crc;
    }

    /// <summary>TFRecord's mask: rotate right by 15 bits and add a constant.</summary>
    public static uint MaskedCrc(ReadOnlySpan<byte> data)
    {
        var crc = Crc32C(data);
        return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
    }

    static readonly byte[] PngSignature = [0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A];

    public static bool IsPng(byte[] bytes) => bytes.AsSpan().StartsWith(PngSignature);

    /// <summary>Width and height from a PNG's IHDR chunk (the first one, right after the signature).</summary>
    public static (int Width, int Height) PngSize(byte[] png) =>
        (BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(16, 4)), BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(20, 4)));

    // Event: 1 wall_time (double), 2 step (int64), 3 file_version (string), 5 summary (Summary).
    static Event ParseEvent(ReadOnlySpan<byte> data)
    {
        double wall = 0;
        long step = 0;
        string? version = null;
        var values = new List<(string, float?, Image?)>();
        var r = new Reader(data);
        while (!r.End)
        {
            var (field, wire) = r.Key();
            switch (field, wire)
            {
                case (1, 1): wall = BitConverter.UInt64BitsToDouble(r.Fixed64()); break;
                case (2, 0): step = (long)r.Varint(); break;
                case (3, 2): version = Encoding.UTF8.GetString(r.Bytes()); break;
                case (5, 2): ParseSummary(r.Bytes(), values); break;
                default: r.Skip(wire); break;
            }
        }
        return new Event(wall, step, version, values);
    }

    // Summary: 1 value (repeated Value). Value: 1 tag, 2 simple_value (float), 4 image (Image).
    static void ParseSummary(ReadOnlySpan<byte> data, List<(string, float?, Image?)> values)
    {
        var r = new Reader(data);
        while (!r.End)
        {
            var (field, wire) = r.Key();
            if (field != 1 || wire != 2)
            {
                r.Skip(wire);
                continue;
            }
            var v = new Reader(r.Bytes());
            string tag = "";
            float? simple = null;
            Image? image = null;
            while (!v.End)
            {
                var (f, w) = v.Key();
                switch (f, w)
                {
                    case (1, 2): tag = Encoding.UTF8.GetString(v.Bytes()); break;
                    case (2, 5): simple = BitConverter.UInt32BitsToSingle(v.Fixed32()); break;
                    case (4, 2): image = ParseImage(v.Bytes()); break;
                    default: v.Skip(w); break;
                }
            }
            values.Add((tag, simple, image));
        }
    }

    // Summary.Image: 1 height, 2 width, 3 colorspace (int32), 4 encoded_image_string (bytes).
    static Image ParseImage(ReadOnlySpan<byte> data)
    {
        int height = 0, width = 0, colorspace = 0;
        byte[] encoded = [];
        var r = new Reader(data);
        while (!r.End)
        {
            var (f, w) = r.Key();
            switch (f, w)
            {
                case (1, 0): height = (int)r.Varint(); break;
                case (2, 0): width = (int)r.Varint(); break;
                case (3, 0): colorspace = (int)r.Varint(); break;
                case (4, 2): encoded = r.Bytes().ToArray(); break;
                default: r.Skip(w); break;
            }
        }
        return new Image(height, width, colorspace, encoded);
    }

    /// <summary>Protobuf wire format: varints, fixed 32/64-bit little-endian, length-delimited.</summary>
    ref struct Reader(ReadOnlySpan<byte> data)
    {
        readonly ReadOnlySpan<byte> _data = data;
        int _at;

        public readonly bool End => _at >= _data.Length;

        public (int Field, int Wire) Key()
        {
            var key = Varint();
            return ((int)(key >> 3), (int)(key & 7));
        }

        public ulong Varint()
        {
            ulong value = 0;
            for (var shift = 0; shift < 64; shift += 7)
            {
                if (_at >= _data.Length) throw new InvalidDataException("varint runs past the end");
                var b = _data[_at++];
                value |= (ulong)(b & 0x7F) << shift;
                if ((b & 0x80) == 0) return value;
            }
            throw new InvalidDataException("varint longer than 10 bytes");
        }

        public uint Fixed32() => BinaryPrimitives.ReadUInt32LittleEndian(Take(4));
        public ulong Fixed64() => BinaryPrimitives.ReadUInt64LittleEndian(Take(8));
        public ReadOnlySpan<byte> Bytes() => Take(checked((int)Varint()));

        ReadOnlySpan<byte> Take(int n)
        {
            if (n < 0 || _at + n > _data.Length) throw new InvalidDataException($"field of {n} bytes runs past the end");
            var s = _data.Slice(_at, n);
            _at += n;
            return s;
        }

        public void Skip(int wire)
        {
            switch (wire)
            {
                case 0: Varint(); break;
                case 1: Take(8); break;
                case 2: Bytes(); break;
                case 5: Take(4); break;
                default: throw new InvalidDataException($"unsupported wire type {wire}");
            }
        }
    }
}
