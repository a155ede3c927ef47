using GanCluster.Training.Core;
using System.Buffers.Binary;
using System.IO.Compression;
using SkiaSharp;
using TorchSharp;
using static TorchSharp.torch;

namespace GanCluster.Training.Data;

/// <summary>How <see cref="ImageDatasets.LoadFolder"/> brings images to the requested square size.</summary>
public enum FolderResize
{
    /// <summary>Centre-crop to a square of the shorter side, then scale to the requested size (high quality).</summary>
    CenterCrop = 0,

    /// <summary>No resizing: every image must already be exactly the requested size.</summary>
    None = 1,
}

/// <summary>
/// Loads image datasets into memory as float32 CPU tensors [N, C, S, S] scaled to [-1, 1] (x / 127.5 − 1).
/// Bad input raises <see cref="DatasetException"/> naming the offending file and the problem.
/// </summary>
public static partial class ImageDatasets
{
    const uint IdxImageMagic = 0x00000803;
    const int IdxHeaderBytes = 16;
    const int CifarSide = 32;
    const int CifarPixelBytes = 3 * CifarSide * CifarSide;
    const int CifarRecordBytes = 1 + CifarPixelBytes;
    const int FolderChunk = 256;
    static readonly string[] ImageExtensions = [".png", ".jpg", ".jpeg"];

    /// <summary>
    /// MNIST / Fashion-MNIST IDX image file (raw or gzip, detected by content). <paramref name="path"/> is the
    /// file, or a folder holding <c>train-images…idx3-ubyte[.gz]</c> (or else a single <c>*images-idx3-ubyte*</c>).
    /// Returns [N, 1, imageSize, imageSize], resized bilinearly when the file's images are another size.
    /// </summary>
    public static SampleSet LoadIdx(string path, int imageSize)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(imageSize, 1);
        var file = ResolveIdxFile(path);
        var (bytes, length) = ReadMaybeGzip(file);

        if (length < 4)
            throw new DatasetException(file, $"not an IDX image file: only {length} bytes");
        var magic = BinaryPrimitives.ReadUInt32BigEndian(bytes);
        if (magic != IdxImageMagic)
            throw new DatasetException(file, $"not an IDX image file: magic 0x{magic:X8} (expected 0x{IdxImageMagic:X8})");
        if (length < IdxHeaderBytes)
            throw new DatasetException(file, $"truncated IDX header: expected {IdxHeaderBytes} bytes but found {length}");
        var count = BinaryPrimitives.ReadUInt32BigEndian(bytes.AsSpan(4));
        var rows = BinaryPrimitives.ReadUInt32BigEndian(bytes.AsSpan(8));
        var cols = BinaryPrimitives.ReadUInt32BigEndian(bytes.AsSpan(12));
        if (count == 0 || rows == 0 || cols == 0)
            throw new DatasetException(file, $"header says {count} images of {rows}x{cols}: no pixels to load");
        // UInt128: a garbage header (up to 2^96 pixels) must not overflow into a plausible size.
        var expected = IdxHeaderBytes + (UInt128)count * rows * cols;
        if ((UInt128)length < expected)
            throw new DatasetException(file, $"truncated: header says {count} images of {rows}x{cols}, expected {expected} bytes but found {length}");
        if ((UInt128)length > expected)
            throw new DatasetException(file, $"{(UInt128)length - expected} unexpected bytes after the {count} images of {rows}x{cols} the header announces (expected {expected} bytes, found {length})");

        using var raw = frombuffer(bytes, ScalarType.Byte, count: length - IdxHeaderBytes, offset: IdxHeaderBytes);
        using var u8 = raw.view(count, 1, rows, cols);
        var images = Resize(ToUnitRange(u8), imageSize);
        GC.KeepAlive(bytes);
        return new SampleSet(images, file);
    }

    /// <summary>
    /// CIFAR-10 binary batches (records of 1 label byte + 1024 R, 1024 G, 1024 B bytes, row-major 32x32).
    /// <paramref name="path"/> is one .bin file or a folder with data_batch_1.bin .. data_batch_5.bin (those
    /// present are concatenated in order). Labels are dropped. Returns [N, 3, imageSize, imageSize].
    /// </summary>
    public static SampleSet LoadCifar10(string path, int imageSize)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(imageSize, 1);
        string[] files;
        if (File.Exists(path))
        {
            files = [path];
        }
        else if (Directory.Exists(path))
        {
            files = Enumerable.Range(1, 5).Select(i => Path.Combine(path, $"data_batch_{i}.bin")).Where(File.Exists).ToArray();
            if (files.Length == 0)
                throw new DatasetException(path, "no CIFAR-10 training batches (data_batch_1.bin .. data_batch_5.bin) in this folder");
        }
        else
        {
            throw new DatasetException(path, "does not exist");
        }

        var lengths = new long[files.Length];
        long total = 0;
        for (var i = 0; i < files.Length; i++)
        {
            lengths[i] = Guard(files[i], () => new FileInfo(files[i]).Length);
            if (lengths[i] == 0)
                throw new DatasetException(files[i], "is empty (expected records of 3073 bytes)");
            if (lengths[i] % CifarRecordBytes != 0)
                throw new DatasetException(files[i],
                    $"length {lengths[i]} bytes is not a multiple of {CifarRecordBytes} (1 label byte + {CifarPixelBytes} pixel bytes per record): " +
                    $"truncated ({lengths[i] / CifarRecordBytes} whole records and {lengths[i] % CifarRecordBytes} bytes left over) or not a CIFAR-10 binary file");
            total += lengths[i];
        }
        if (total > Array.MaxLength)
            throw new DatasetException(path, $"{total} bytes of CIFAR-10 records is more than one buffer can hold ({Array.MaxLength})");

        var buffer = GC.AllocateUninitializedArray<byte>((int)total);
        var at = 0;
        for (var i = 0; i < files.Length; i++)
        {
            var file = files[i];
            var len = (int)lengths[i];
            var start = at;
            Guard(file, () =>
            {
                using var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
                var read = stream.ReadAtLeast(buffer.AsSpan(start, len), len, throwOnEndOfStream: false);
                if (read != len)
                    throw new DatasetException(file, $"truncated while reading: expected {len} bytes but found {read}");
                return read;
            });
            at += len;
        }

        var n = total / CifarRecordBytes;
        using var raw = frombuffer(buffer, ScalarType.Byte);
        using var records = raw.view(n, CifarRecordBytes);
        using var pixelBytes = records.narrow(1, 1, CifarPixelBytes);
        using var pixels = pixelBytes.view(n, 3, CifarSide, CifarSide);
        var images = Resize(ToUnitRange(pixels), imageSize);
        GC.KeepAlive(buffer);
        return new SampleSet(images, path);
    }

    /// <summary>
    /// Every .png/.jpg/.jpeg (any case) under <paramref name="path"/>, recursively, in ordinal path order, decoded
    /// with SkiaSharp. <paramref name="channels"/> 1 gives greyscale (ITU-R 601 luma, rounded to 8 bits), 3 gives
    /// RGB (alpha dropped, colour not premultiplied). Returns [N, channels, imageSize, imageSize].
    /// </summary>
    public static SampleSet LoadFolder(string path, int imageSize, int channels, FolderResize resize = FolderResize.CenterCrop)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(imageSize, 1);
        if (channels is not (1 or 3))
            throw new ArgumentOutOfRangeException(nameof(channels), channels, "channels must be 1 (greyscale) or 3 (RGB)");
        if (!Enum.IsDefined(resize))
            throw new ArgumentOutOfRangeException(nameof(resize), resize, "unknown resize mode");
        if (!Directory.Exists(path))
            throw new DatasetException(path, File.Exists(path) ? "is a file, expected a folder of images" : "does not exist");

        var files = Guard(path, () => Directory.EnumerateFiles(path, "*", SearchOption.AllDirectories)
            .Where(f => ImageExtensions.Contains(Path.GetExtension(f), StringComparer.OrdinalIgnoreCase))
            .Order(StringComparer.Ordinal)
            .ToArray());
        if (files.Length == 0)
            throw new DatasetException(path, "no images (.png, .jpg, .jpeg) in this folder or its subfolders");

        var pixelsPerImage = checked(imageSize * imageSize);
        var bytesPerImage = checked(pixelsPerImage * 4);
        var output = empty([files.Length, channels, imageSize, imageSize], ScalarType.Float32);
        try
        {
            var chunk = new byte[checked(Math.Min(FolderChunk, files.Length) * bytesPerImage)];
            for (var start = 0; start < files.Length; start += FolderChunk)
            {
                var n = Math.Min(FolderChunk, files.Length - start);
                var errors = new Exception?[n];
                Parallel.For(0, n, i =>
                {
                    try
                    {
                        DecodeInto(files[start + i], imageSize, resize, chunk.AsSpan(i * bytesPerImage, bytesPerImage));
                    }
                    catch (Exception e)
                    {
                        errors[i] = e;
                    }
                });
                // Report the first failure in path order, whatever order the threads ran in.
                var error = errors.FirstOrDefault(e => e is not null);
                if (error is DatasetException) throw error;
                if (error is not null) throw new DatasetException(files[start + Array.IndexOf(errors, error)], $"cannot be loaded: {error.Message}");

                using var raw = frombuffer(chunk, ScalarType.Byte, count: (long)n * bytesPerImage);
                using var rgba = raw.view(n, imageSize, imageSize, 4);
                using var rgbLast = rgba.narrow(3, 0, 3);
                using var rgb = rgbLast.permute(0, 3, 1, 2); // [n, 3, S, S]
                using var grey = channels == 1 ? Luma(rgb) : null;
                using var converted = ToUnitRange(grey ?? rgb);
                using var target = output.narrow(0, start, n);
                target.copy_(converted);
            }
            GC.KeepAlive(chunk);
            return new SampleSet(output, path);
        }
        catch
        {
            output.Dispose();
            throw;
        }
    }

    /// <summary>Decodes <paramref name="file"/>, crops/scales or checks its size, and writes RGBA bytes (row-major) to <paramref name="rgba"/>.</summary>
    static void DecodeInto(string file, int size, FolderResize resize, Span<byte> rgba)
    {
        if (!File.Exists(file)) throw new DatasetException(file, "does not exist");
        using var codec = SKCodec.Create(file, out var result);
        if (codec is null)
            throw new DatasetException(file, $"cannot be decoded as an image ({result})");
        var (width, height) = (codec.Info.Width, codec.Info.Height);
        if (resize == FolderResize.None && (width != size || height != size))
            throw new DatasetException(file, $"is {width}x{height}, expected {size}x{size} (resize mode None needs every image at the target size)");

        var info = new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        using var decoded = new SKBitmap(info);
        var status = codec.GetPixels(info, decoded.GetPixels());
        // IncompleteInput: a truncated file Skia could partly decode; treat it as undecodable.
        if (status != SKCodecResult.Success)
            throw new DatasetException(file, $"cannot be decoded as an image ({status})");

        if (width == size && height == size)
        {
            CopyPixels(decoded, rgba);
            return;
        }

        var side = Math.Min(width, height);
        var crop = SKRectI.Create((width - side) / 2, (height - side) / 2, side, side);
        using var square = new SKBitmap();
        if (!decoded.ExtractSubset(square, crop))
            throw new DatasetException(file, $"cannot crop {width}x{height} to {side}x{side}");
        if (side == size)
        {
            CopyPixels(square, rgba);
            return;
        }
        using var scaled = new SKBitmap(new SKImageInfo(size, size, SKColorType.Rgba8888, SKAlphaType.Unpremul));
        // What SkiaSharp 2.88's SKFilterQuality.High did: bicubic (Mitchell) up, bilinear with the nearest mipmap down
        // (upscales identical, downscales within ±2 of 255 per channel, by a probe of both versions).
        var sampling = size > side ? new SKSamplingOptions(SKCubicResampler.Mitchell) : new SKSamplingOptions(SKFilterMode.Linear, SKMipmapMode.Nearest);
        if (!square.ScalePixels(scaled, sampling))
            throw new DatasetException(file, $"cannot scale {side}x{side} to {size}x{size}");
        CopyPixels(scaled, rgba);
    }

    static void CopyPixels(SKBitmap bitmap, Span<byte> rgba)
    {
        var rowBytes = bitmap.Width * 4;
        using var pixmap = bitmap.PeekPixels();
        var source = pixmap.GetPixelSpan();
        if (pixmap.RowBytes == rowBytes)
        {
            source[..rgba.Length].CopyTo(rgba);
            return;
        }
        for (var y = 0; y < bitmap.Height; y++)
            source.Slice(y * pixmap.RowBytes, rowBytes).CopyTo(rgba.Slice(y * rowBytes, rowBytes));
    }

    /// <summary>uint8 [n, 3, S, S] → uint8 [n, 1, S, S]: round(0.299 R + 0.587 G + 0.114 B).</summary>
    static Tensor Luma(Tensor rgb)
    {
        using var f = rgb.to_type(ScalarType.Float32);
        using var weights = tensor(new[] { 0.299f, 0.587f, 0.114f }, [1, 3, 1, 1]);
        using var weighted = f.mul(weights);
        using var sum = weighted.sum(1, keepdim: true);
        sum.round_();
        using Scalar zero = 0, max = 255;   // held (see Scalars)
        sum.clamp_(zero, max);
        return sum.to_type(ScalarType.Byte);
    }

    /// <summary>Any uint8 tensor → a new contiguous float32 tensor x / 127.5 − 1 (0 → −1, 255 → 1).</summary>
    static Tensor ToUnitRange(Tensor u8)
    {
        var f = u8.to_type(ScalarType.Float32); // a new tensor: the dtype differs
        if (!f.is_contiguous())
        {
            using var strided = f;
            f = strided.contiguous();
        }
        using Scalar half = 127.5f;   // held (see Scalars)
        f.div_(half);
        f.sub_(Scalars.One);
        return f;
    }

    /// <summary>Bilinear resize of float [N, C, h, w] to [N, C, size, size]; takes ownership of <paramref name="images"/>.</summary>
    static Tensor Resize(Tensor images, int size)
    {
        if (images.shape[2] == size && images.shape[3] == size) return images;
        using (images)
        {
            var shrinking = size < images.shape[2] || size < images.shape[3];
            var resized = nn.functional.interpolate(images, [size, size], mode: InterpolationMode.Bilinear,
                align_corners: false, antialias: shrinking);
            using Scalar lo = -1f, hi = 1f;   // held (see Scalars)
            resized.clamp_(lo, hi);
            return resized;
        }
    }

    static string ResolveIdxFile(string path)
    {
        if (File.Exists(path)) return path;
        if (!Directory.Exists(path)) throw new DatasetException(path, "does not exist");

        var names = Guard(path, () => Directory.GetFiles(path).Select(f => Path.GetFileName(f)).Order(StringComparer.Ordinal).ToArray());
        // Prefer the training file (raw before .gz: the shorter name sorts first; both hold the same images).
        var train = names.FirstOrDefault(n => n.Contains("train-images", StringComparison.OrdinalIgnoreCase)
                                              && n.Contains("idx3-ubyte", StringComparison.OrdinalIgnoreCase));
        if (train is not null) return Path.Combine(path, train);
        var any = names.Where(n => n.Contains("images-idx3-ubyte", StringComparison.OrdinalIgnoreCase)).ToArray();
        return any.Length switch
        {
            1 => Path.Combine(path, any[0]),
            0 => throw new DatasetException(path, "no IDX image file in this folder (expected train-images-idx3-ubyte[.gz] or a single *images-idx3-ubyte* file)"),
            _ => throw new DatasetException(path, $"several IDX image files and none is a train-images file ({string.Join(", ", any)}); pass the file itself"),
        };
    }

    /// <summary>The file's bytes, gunzipped when it starts with the gzip magic 1f 8b. Returns the buffer and its used length.</summary>
    static (byte[] Bytes, int Length) ReadMaybeGzip(string file)
    {
        var bytes = Guard(file, () => File.ReadAllBytes(file));
        if (bytes.Length < 2 || bytes[0] != 0x1f || bytes[1] != 0x8b) return (bytes, bytes.Length);
        try
        {
            using var input = new MemoryStream(bytes, writable: false);
            using var gzip = new GZipStream(input, CompressionMode.Decompress);
            // The gzip trailer's ISIZE is the uncompressed length mod 2^32: a good first capacity, bounded by
            // deflate's maximum ratio (~1032:1) so a corrupt trailer cannot ask for a huge buffer.
            var isize = bytes.Length >= 18 ? BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(bytes.Length - 4)) : 0u;
            var capacity = (int)Math.Clamp(isize, 1024L, Math.Min(Array.MaxLength, bytes.Length * 1032L));
            using var output = new MemoryStream(capacity);
            gzip.CopyTo(output);
            if (output.Length > Array.MaxLength)
                throw new DatasetException(file, "decompresses to more than one buffer can hold");
            return (output.GetBuffer(), (int)output.Length);
        }
        catch (InvalidDataException e)
        {
            throw new DatasetException(file, $"corrupt gzip data: {e.Message}");
        }
        catch (IOException e)
        {
            throw new DatasetException(file, $"corrupt gzip data: {e.Message}");
        }
    }

    /// <summary>Runs a file-system access, turning I/O and permission errors into <see cref="DatasetException"/>.</summary>
    static T Guard<T>(string path, Func<T> action)
    {
        try
        {
            return action();
        }
        catch (FileNotFoundException)
        {
            throw new DatasetException(path, "does not exist");
        }
        catch (DirectoryNotFoundException)
        {
            throw new DatasetException(path, "does not exist");
        }
        catch (IOException e)
        {
            throw new DatasetException(path, $"cannot be read: {e.Message}");
        }
        catch (UnauthorizedAccessException e)
        {
            throw new DatasetException(path, $"cannot be read: {e.Message}");
        }
    }
}
