using GanCluster.Training.Native;
using TorchSharp;
var env = TorchRuntime.Initialize();
Console.WriteLine(env);
var t = torch.ones(3);
Console.WriteLine(t.sum().item<float>());
