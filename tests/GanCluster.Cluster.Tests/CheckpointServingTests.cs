using Akka.Actor;
using Akka.Configuration;
using GanCluster.Actors.Coordinator;
using GanCluster.Training.Output;
using static GanCluster.Protocol.ArtifactProtocol;

namespace GanCluster.Cluster.Tests;

/// <summary>The checkpoint actor serves a run's checkpoints to rank 0 of a resumed run, and nothing else on the seed's disk.</summary>
public sealed class CheckpointServingTests : IDisposable
{
    readonly ActorSystem _system = ActorSystem.Create("serving-test", ConfigurationFactory.ParseString("akka.loglevel = WARNING"));
    readonly TempFolder _dir = new();
    static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);

    (IActorRef Actor, string Checkpoint, Dictionary<string, byte[]> Files) Serving()
    {
        var output = Path.Combine(_dir.Path, "out");
        var files = new Dictionary<string, byte[]>
        {
            ["G.bin"] = Enumerable.Range(0, 150_000).Select(i => (byte)(i * 7)).ToArray(),   // three chunks, the last one short
            ["D.bin"] = [1, 2, 3],
            ["optD.bin"] = [4, 5],
            ["optG.bin"] = [],                                                               // no chunk at all
            ["state.json"] = "{\"iteration\":500}"u8.ToArray(),
        };
        var checkpoint = CheckpointStore.Write(output, new CheckpointSnapshot(500, files), keep: 1);
        var actor = _system.ActorOf(Props.Create(() => new CheckpointActor()));
        actor.Tell(new CheckpointActor.Start("run-1", output, "{}", 1));
        return (actor, checkpoint, files);
    }

    [Fact]
    public async Task A_checkpoint_is_listed_and_read_back_chunk_by_chunk_into_identical_files()
    {
        var (actor, checkpoint, files) = Serving();
        var listed = Assert.IsType<CheckpointListed>(await actor.Ask(new ListCheckpoint("run-1", checkpoint), Wait));
        Assert.Equal(["D.bin", "G.bin", "manifest.json", "optD.bin", "optG.bin", "state.json"], listed.Files);

        var fetched = Path.Combine(_dir.Path, "fetched");
        Directory.CreateDirectory(fetched);
        var chunks = 0;
        for (var i = 0; i < listed.Files.Length; i++)
        {
            using var fs = File.Create(Path.Combine(fetched, listed.Files[i]));
            for (long offset = 0; offset < listed.Sizes[i]; chunks++)
            {
                var chunk = Assert.IsType<FileChunk>(await actor.Ask(new ReadCheckpoint("run-1", checkpoint, listed.Files[i], offset), Wait));
                Assert.Equal(offset, chunk.Offset);
                Assert.True(chunk.Data.Length <= ChunkBytes);
                Assert.Equal(offset + chunk.Data.Length == listed.Sizes[i], chunk.Last);
                fs.Write(chunk.Data);
                offset += chunk.Data.Length;
            }
        }
        Assert.Equal(1 + 3 + 1 + 1 + 0 + 1, chunks);                           // G.bin in 3, optG.bin in none
        Assert.Null(CheckpointStore.Verify(fetched));
        Assert.Equal(files["G.bin"], File.ReadAllBytes(Path.Combine(fetched, "G.bin")));
    }

    [Fact]
    public async Task Another_run_a_folder_outside_its_checkpoints_and_paths_that_climb_out_are_refused()
    {
        var (actor, checkpoint, _) = Serving();
        async Task<string> Refused(object ask) => Assert.IsType<CheckpointRefused>(await actor.Ask(ask, Wait)).Reason;

        Assert.Contains("open for run run-1, not run-2", await Refused(new ListCheckpoint("run-2", checkpoint)));
        Assert.Contains("is not a checkpoint of run run-1", await Refused(new ListCheckpoint("run-1", _dir.Path)));
        Assert.Contains("is not a checkpoint of run run-1", await Refused(new ListCheckpoint("run-1", Path.Combine(checkpoint, "..", "..", ".."))));
        Assert.Contains("does not exist", await Refused(new ListCheckpoint("run-1", CheckpointStore.PathOf(Path.Combine(_dir.Path, "out"), 999))));
        Assert.Contains("is not a file of", await Refused(new ReadCheckpoint("run-1", checkpoint, "../../spec.json", 0)));
        Assert.Contains("is not a file of", await Refused(new ReadCheckpoint("run-1", checkpoint, "missing.bin", 0)));
    }

    public void Dispose()
    {
        _system.Terminate().Wait();
        _dir.Dispose();
    }
}
