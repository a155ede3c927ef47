using Akka.Actor;
using Akka.Configuration;
using GanCluster.Actors.Coordinator;
using GanCluster.Engine.Coordinator;
using GanCluster.Training.Output;
using static GanCluster.Protocol.ArtifactProtocol;

namespace GanCluster.Cluster.Tests;

/// <summary>The checkpoint actor serves a run's checkpoints to rank 0 of a resumed run, and nothing else on the seed's disk.</summary>
public sealed class CheckpointServingTests : IDisposable
{
    readonly ActorSystem _system = ActorSystem.Create("serving-test", ConfigurationFactory.ParseString("akka.loglevel = WARNING"));
    readonly TempFolder _dir = new();
    static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);

    /// <summary>This process's node: what the coordinator names as rank 0's when the uploader is local.</summary>
    Address Local => ((ExtendedActorSystem)_system).Provider.DefaultAddress;

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
        var actor = _system.ActorOf(Props.Create(() => new CheckpointActor(_ => true)));
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

    /// <summary>The coordinator's place: creates the checkpoint actor and hands its outcomes to the test.</summary>
    sealed class Parent : ReceiveActor
    {
        public Parent(TaskCompletionSource<CheckpointActor.Done> done)
        {
            var child = Context.ActorOf(Props.Create(() => new CheckpointActor(_ => true)));
            Receive<CheckpointActor.Done>(d => done.TrySetResult(d));
            ReceiveAny(m => child.Forward(m));
        }
    }

    [Fact]
    public async Task An_IO_error_while_uploading_is_reported_at_once_with_the_path_and_leaves_nothing_half_written()
    {
        var output = Path.Combine(_dir.Path, "io");
        var good = CheckpointStore.Write(output, new CheckpointSnapshot(10, new Dictionary<string, byte[]>
        {
            ["G.bin"] = [1], ["D.bin"] = [2], ["optD.bin"] = [3], ["optG.bin"] = [4], ["state.json"] = "{}"u8.ToArray(),
        }), keep: 3);
        var done = new TaskCompletionSource<CheckpointActor.Done>();
        var parent = _system.ActorOf(Props.Create(() => new Parent(done)));
        parent.Tell(new CheckpointActor.Start("run-io", output, "{}", 3));
        parent.Tell(new CheckpointActor.AllowUploads("run-io", Local));
        // A file where the upload's folder must go: the same IOException path as a full disk, without needing one.
        Directory.CreateDirectory(Path.Combine(output, ".upload-00000020"));
        File.WriteAllText(Path.Combine(output, ".upload-00000020", "checkpoints"), "in the way");

        // Refused, not acknowledged: rank 0 must not think it landed, and stops sending at once.
        var refused = Assert.IsType<ChunkRefused>(await parent.Ask(new FileChunk("run-io", 20, "checkpoints/iter-00000020/G.bin", 0, [1, 2, 3], true), Wait));
        Assert.Equal("saving the outputs of iteration 20 failed on the seed", refused.Reason);
        var d = await done.Task.WaitAsync(Wait);
        Assert.Equal(("run-io", 20L), (d.RunId, d.Iteration));
        Assert.Contains(Path.Combine(output, ".upload-00000020", "checkpoints"), d.Error);   // the path, and the OS's message
        Assert.False(Directory.Exists(Path.Combine(output, ".upload-00000020")));          // staging cleaned up
        Assert.Null(CheckpointStore.Verify(good));                                          // what was saved before is intact
    }

    [Theory]
    [InlineData("samples/pwned.sh")]
    [InlineData("samples/iter-00000019.png")]          // another iteration's name
    [InlineData("checkpoints/iter-00000020/evil.so")]
    [InlineData("../../../etc/cron.d/x")]
    [InlineData("/etc/passwd")]
    public async Task Only_the_files_a_save_of_that_iteration_holds_are_accepted(string path)
    {
        var output = Path.Combine(_dir.Path, "names");
        var actor = _system.ActorOf(Props.Create(() => new CheckpointActor(_ => true)));
        actor.Tell(new CheckpointActor.Start("run-n", output, "{}", 1));
        actor.Tell(new CheckpointActor.AllowUploads("run-n", Local));
        var refused = Assert.IsType<ChunkRefused>(await actor.Ask(new FileChunk("run-n", 20, path, 0, [35, 33], true), Wait));
        Assert.Equal($"{path} is not an output of iteration 20", refused.Reason);            // refused, saying why
        Assert.False(Directory.Exists(Path.Combine(output, ".upload-00000020")));             // nothing written
        // The names a real save uses are accepted.
        Assert.IsType<ChunkAck>(await actor.Ask(new FileChunk("run-n", 20, "samples/iter-00000020.png", 0, [1], true), Wait));
        Assert.IsType<ChunkAck>(await actor.Ask(new FileChunk("run-n", 20, "checkpoints/iter-00000020/G.bin", 0, [1], true), Wait));
    }
}
