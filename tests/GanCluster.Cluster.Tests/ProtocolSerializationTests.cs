using Akka.Actor;
using Akka.Configuration;
using GanCluster.Actors;
using GanCluster.Protocol;
using static GanCluster.Protocol.ArtifactProtocol;
using static GanCluster.Protocol.RunProtocol;
using static GanCluster.Protocol.WorkerProtocol;

namespace GanCluster.Cluster.Tests;

/// <summary>Every protocol message goes through the serializer the nodes use (Hyperion with the protocol's allow-list, bound to the marker) and back.</summary>
public sealed class ProtocolSerializationTests : IDisposable
{
    readonly ActorSystem _system = ActorSystem.Create("serialization-test", ClusterHocon.Serialization.WithFallback(ConfigurationFactory.ParseString("akka.loglevel = WARNING")));

    public static IEnumerable<object[]> Messages()
    {
        var step = new StepKey(3, StepPhase.Generator, 0);
        var d1 = new StepKey(3, StepPhase.Discriminator, 1);
        IGanClusterMessage[] all =
        [
            new SubmitRun("{\"name\":\"x\"}", true),
            new SubmitAck("run-1", 2, "runs/x"),
            new SubmitNack("invalid run spec", ["training.k: must be at least 1", "name: bad"]),
            new ProgressReported("run-1", 100, 2000, 1.2, 0.9, 0.6, 0.4, 12345.6, 7.5),
            new RunEnded("run-1", RunOutcome.Completed, "done", "runs/x", "abc"),
            new RunEnded("run-1", RunOutcome.Failed, "worker lost", "runs/x", null),
            new RunNoted("run-1", "worker w2 (rank 2) was lost; re-forming", true),
            new WatchRun("run-1"),
            new WatchAck("run-1", RunState.Resuming, 500),
            new WatchNack("run-9", "no such run"),
            new CancelRun("run-1", "ana@laptop"),
            new CancelAck("run-1", "stops after iteration 12"),
            new CancelNack("run-9", "no run is active"),
            new GetStatus(),
            new Refused("StepFailed", "clients may submit, watch, cancel and ask for status only"),
            new StatusReported(RunState.Running, "run-1", 3, 42, null),
            new StatusReported(RunState.Running, "run-1", 2, 42, "worker lost", 2000, [new WorkerStatus("127.0.0.1:4000/cpu", "cpu", 0), new WorkerStatus("b", "cuda:1", -1)]),
            new ListRuns(),
            new RunsListed([new RunSummary("mnist", "/runs/mnist", RunFolderState.Running, 500, 3000, "FD 12.5 at 500", new DateTime(2026, 11, 30, 12, 0, 0, DateTimeKind.Utc)),
                new RunSummary("ring8", "/runs/ring8", RunFolderState.NotStarted, 0, 100, null, DateTime.MinValue)], 3),
            new RegisterWorker("127.0.0.1:4000/cpu", "cpu", "127.0.0.1", 45000),
            new WorkerRegistered("127.0.0.1:4000/cpu"),
            new PrepareRun("run-1", "{}", 1, 3, [4, 3, 3], 987654321, [new PeerAddress(0, "10.0.0.1", 1), new PeerAddress(1, "10.0.0.2", 2)], null),
            new PrepareRun("run-1", "{}", 0, 2, [5, 5], 7, [new PeerAddress(0, "10.0.0.1", 1)], new ResumeFrom(step, 12800, "/runs/x/checkpoints/iter-00000500", 2)),
            new RunPrepared("run-1", 7, 1, "w", 60000),
            new PrepareFailed("run-1", 7, 1, "w", "no such file"),
            new RunSegment("run-1", 7, 500, true),
            new YieldSegment("run-1", 7),
            new SegmentDone("run-1", 7, 2, step, 64, new WindowStats(1, 2, 0.5, 0.5, 10), "cafe", 3, 1, false),
            new SegmentDone("run-1", 7, 2, null, 64, null, null, 0, 0, true),
            new SegmentProgress("run-1", 7, 1, d1),
            new StepFailed("run-1", 7, step, 0, "connection reset"),
            new AbortStep("run-1", 8),
            new StepAborted("run-1", 8, "w", true, step),
            new StepAborted("run-1", 8, "w", false, null),
            new FinishRun("run-1", 7, "runs/x", "{\"runId\":\"run-1\"}"),
            new RunFinishedOnWorker("run-1", 7, 0, "cafe"),
            new SaveArtifacts("run-1", 7, 500, true, "{}"),
            new ArtifactsSnapshotted("run-1", 7, 500, 12.5),
            new LeaveRun("w"),
            new LeaveAccepted("w"),
            new StopRun("run-1", "completed"),
            new FileChunk("run-1", 500, "samples/iter-00000500.png", 65536, [1, 2, 3, 255], false),
            new ChunkAck("run-1", "samples/iter-00000500.png", 65536),
            new ChunkRefused("run-1", "samples/iter-00000500.png", "saving the outputs of iteration 500 failed on the seed"),
            new ArtifactsUploaded("run-1", 500, ["samples/a.png", "checkpoints/iter-00000500/G.bin"], true),
            new ArtifactsSaved("run-1", 500),
            new ArtifactsFailed("run-1", 500, "disk full"),
            new ListCheckpoint("run-1", "/runs/x/checkpoints/iter-00000500"),
            new CheckpointListed("run-1", "/runs/x/checkpoints/iter-00000500", ["G.bin", "manifest.json"], [1234567, 321]),
            new ReadCheckpoint("run-1", "/runs/x/checkpoints/iter-00000500", "G.bin", 65536),
            new CheckpointRefused("run-1", "/etc", "not a checkpoint of run run-1"),
        ];
        return all.Select(m => new object[] { m });
    }

    [Theory]
    [MemberData(nameof(Messages))]
    public void Round_trips_through_hyperion(IGanClusterMessage message)
    {
        var serializer = _system.Serialization.FindSerializerFor(message);
        Assert.Equal("ProtocolSerializer", serializer.GetType().Name);
        var bytes = serializer.ToBinary(message);
        var back = serializer.FromBinary(bytes, message.GetType());
        Assert.Equal(System.Text.Json.JsonSerializer.Serialize(message, message.GetType()), System.Text.Json.JsonSerializer.Serialize(back, message.GetType()));
        Assert.IsType(message.GetType(), back);
    }

    [Fact]
    public void Every_protocol_message_type_is_covered()
    {
        var covered = Messages().Select(m => m[0].GetType()).ToHashSet();
        var all = typeof(IGanClusterMessage).Assembly.GetTypes().Where(t => typeof(IGanClusterMessage).IsAssignableFrom(t) && !t.IsInterface);
        Assert.Empty(all.Where(t => !covered.Contains(t)).Select(t => t.FullName));
    }

    [Fact]
    public void A_file_chunk_fits_in_the_default_frame()
    {
        var chunk = new FileChunk("run-with-a-long-name-20261126-120000", 12345678, "checkpoints/iter-12345678/optG.bin", 0, new byte[ChunkBytes], false);
        Assert.True(_system.Serialization.FindSerializerFor(chunk).ToBinary(chunk).Length < 128_000);
    }

    public void Dispose() => _system.Terminate().Wait();
}

/// <summary>A message type from outside the protocol, bound to the same serializer as if it were one of ours.</summary>
public sealed record ForeignMessage(string Payload) : IGanClusterMessage;

public sealed class HyperionAllowListTests : IDisposable
{
    readonly ActorSystem _system = ActorSystem.Create("allow-list-test", ClusterHocon.Serialization.WithFallback(ConfigurationFactory.ParseString("akka.loglevel = WARNING")));

    [Fact]
    public void A_type_outside_the_protocol_is_refused_when_read_and_when_sent()
    {
        // A hostile peer's serializer has no allow-list: it writes whatever it likes, in the same Hyperion format.
        var hostile = new Hyperion.Serializer(new Hyperion.SerializerOptions(versionTolerance: true, preserveObjectReferences: true,
            surrogates: null, serializerFactories: null, knownTypes: null, ignoreISerializable: true, packageNameOverrides: null,
            disallowUnsafeTypes: true, typeFilter: Hyperion.DisabledTypeFilter.Instance));
        byte[] Write(object o)
        {
            using var ms = new MemoryStream();
            hostile.Serialize(o, ms);
            return ms.ToArray();
        }
        var bytes = Write(new ForeignMessage("rm -rf /"));
        var wrapped = Write(new RunProtocol.SubmitRun("{}", false));

        var serializer = _system.Serialization.FindSerializerFor(new ForeignMessage("x"));
        Assert.Equal("ProtocolSerializer", serializer.GetType().Name);
        var read = Record.Exception(() => serializer.FromBinary(bytes, typeof(ForeignMessage)));
        Assert.Contains("Unsafe Type Deserialization Detected", read?.ToString());
        Assert.Contains("ForeignMessage", read!.ToString());
        Assert.Contains("Unsafe Type", Record.Exception(() => serializer.ToBinary(new ForeignMessage("x")))?.ToString());
        // The protocol's own types go through, also when a peer without the filter wrote them.
        Assert.IsType<RunProtocol.SubmitRun>(serializer.FromBinary(wrapped, typeof(RunProtocol.SubmitRun)));
        var ok = new WorkerProtocol.PrepareRun("r", "{}", 0, 1, [1], 1, [new PeerAddress(0, "127.0.0.1", 1)],
            new WorkerProtocol.ResumeFrom(new StepKey(1, StepPhase.Generator, 0), 5, null));
        Assert.IsType<WorkerProtocol.PrepareRun>(serializer.FromBinary(serializer.ToBinary(ok), typeof(WorkerProtocol.PrepareRun)));
    }

    public void Dispose() => _system.Terminate().Wait();
}
