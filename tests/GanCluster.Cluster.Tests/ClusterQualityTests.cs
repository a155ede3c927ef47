using System.Threading.Channels;
using Akka.Actor;
using Akka.Configuration;
using GanCluster.Actors.Coordinator;
using GanCluster.Training.Core;
using GanCluster.Training.Output;
using GanCluster.Training.Spec;
using static GanCluster.Protocol.ArtifactProtocol;

namespace GanCluster.Cluster.Tests;

/// <summary>
/// The seed's checkpoint actor rates each published 2-D sample set: a quality row in metrics.csv, and with
/// <c>checkpoint.keepBest</c> the best-covering checkpoint spared by pruning (image runs of a cluster are scored with
/// <c>gancluster eval</c>).
/// </summary>
public sealed class ClusterQualityTests : IDisposable
{
    readonly ActorSystem _system = ActorSystem.Create("quality-test", ConfigurationFactory.ParseString("akka.loglevel = WARNING"));
    readonly TempFolder _dir = new();
    static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);

    Address Local => ((ExtendedActorSystem)_system).Provider.DefaultAddress;

    sealed class Parent : ReceiveActor
    {
        public Parent(ChannelWriter<CheckpointActor.Done> done)
        {
            var child = Context.ActorOf(Props.Create(() => new CheckpointActor(_ => true)));
            Receive<CheckpointActor.Done>(d => done.TryWrite(d));
            ReceiveAny(m => child.Forward(m));
        }
    }

    /// <summary>2,500 ring8 points: 2,000 on the first <paramref name="modes"/> modes (exactly on them), 500 far from any.</summary>
    static byte[] Samples(int modes)
    {
        var ring = RunData.Mixture("ring8")!.Value.Modes;
        var xy = new float[5000];
        for (var i = 0; i < 2500; i++)
        {
            var (x, y) = i < 2000 ? ring[i % modes] : (9f, 9f);
            (xy[2 * i], xy[2 * i + 1]) = (x, y);
        }
        return SampleCsv.Encode(xy);
    }

    [Fact]
    public async Task Published_2d_samples_become_quality_rows_and_keep_best_spares_the_best_covering_checkpoint()
    {
        var output = Path.Combine(_dir.Path, "ring");
        var spec = RunSpec.BuiltInDefault with { Output = output, Checkpoint = new CheckpointSpec { Every = 100, Keep = 1, KeepBest = true } };
        var channel = Channel.CreateUnbounded<CheckpointActor.Done>();
        var parent = _system.ActorOf(Props.Create(() => new Parent(channel.Writer)));
        parent.Tell(new CheckpointActor.Start("run-q", output, spec.ToJson(), 1, DatasetKind: "ring8"));
        parent.Tell(new CheckpointActor.AllowUploads("run-q", Local));

        var modesAt = new Dictionary<long, int> { [100] = 6, [200] = 8, [300] = 7 };
        foreach (var (iteration, modes) in modesAt)
        {
            parent.Tell(new CheckpointActor.Append(new MetricsRow(iteration, 1, 1, 0.5, 0.5, 100, iteration / 10.0)));
            var name = $"{CheckpointStore.Prefix}{iteration:D8}";
            var files = CheckpointStore.Files.ToDictionary(f => f, f => new byte[] { (byte)iteration });
            var upload = files.Select(f => ($"checkpoints/{name}/{f.Key}", f.Value))
                .Append(($"checkpoints/{name}/manifest.json", CheckpointStore.Manifest(new CheckpointSnapshot(iteration, files))))
                .Append(($"samples/{name}.csv", Samples(modes)));
            foreach (var (path, bytes) in upload)
                Assert.IsType<ChunkAck>(await parent.Ask(new FileChunk("run-q", iteration, path, 0, bytes, true), Wait));
            parent.Tell(new ArtifactsUploaded("run-q", iteration, [], Checkpoint: true));
            var done = await channel.Reader.ReadAsync().AsTask().WaitAsync(Wait);
            Assert.Null(done.Error);
            Assert.StartsWith($"modes {modes}/8", done.Quality);
        }

        var rows = MetricsCsv.Read(Path.Combine(output, "metrics.csv")).Where(r => r.IsQuality).ToList();
        Assert.Equal([100L, 200, 300], rows.Select(r => r.Iteration));
        Assert.Equal([6, 8, 7], rows.Select(r => r.Modes!.Value));
        Assert.All(rows, r => Assert.Equal(0.8, r.HighQuality!.Value, 6));
        Assert.Equal([10.0, 20.0, 30.0], rows.Select(r => r.ElapsedSeconds!.Value));   // the interval row's time
        Assert.Equal(200, BestCheckpoint.Read(output)!.Iteration);
        Assert.Equal(["iter-00000300", "iter-00000200"], CheckpointStore.List(output).Select(Path.GetFileName));
    }

    public void Dispose()
    {
        _system.Terminate().Wait();
        _dir.Dispose();
    }
}
