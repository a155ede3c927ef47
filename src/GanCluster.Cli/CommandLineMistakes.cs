using System.CommandLine;
using System.CommandLine.Parsing;

namespace GanCluster.Cli;

/// <summary>What is wrong with a command line before any command runs: the parser's errors, and flags it does not know.</summary>
static class CommandLineMistakes
{
    /// <summary>
    /// Every mistake, each named. A misspelled flag (<c>train --local --iteratons 5 spec.json</c>) would otherwise be
    /// taken for the spec's file name: any argument that looks like a flag and is none of the command's is reported
    /// as an unknown flag, with the nearest known one.
    /// </summary>
    public static List<string> Of(ParseResult parsed)
    {
        var command = parsed.CommandResult.Command;
        var known = KnownFlags(command);
        var unknown = new List<string>();
        var mistakes = new List<string>();
        foreach (var token in parsed.Tokens)
        {
            if (token.Type != TokenType.Argument) continue;
            if (command is RootCommand && !LooksLikeFlag(token.Value))
            {
                mistakes.Add($"unknown command {token.Value} (commands: {string.Join(", ", command.Subcommands.Select(c => c.Name))})");
                continue;
            }
            if (!LooksLikeFlag(token.Value) || known.Contains(token.Value)) continue;
            var near = known.Where(k => k.StartsWith("--", StringComparison.Ordinal))
                .Select(k => (Flag: k, Edits: Distance(k, token.Value))).Where(k => k.Edits <= 3)
                .OrderBy(k => k.Edits).Select(k => k.Flag).FirstOrDefault();
            unknown.Add(token.Value);
            mistakes.Add($"unknown flag {token.Value}" + (near is null ? "" : $" (did you mean {near}?)"));
        }
        // The parser's own errors, but for the ones that follow from a word named above: after an unknown flag, its
        // value and the words after it are "unrecognized" too.
        foreach (var e in parsed.Errors)
            if (!(unknown.Count > 0 && e.Message.StartsWith("Unrecognized command or argument", StringComparison.Ordinal))
                && !(command is RootCommand && mistakes.Count > 0))
                mistakes.Add(e.Message);
        return mistakes;
    }

    /// <summary>The command's words after <c>gancluster</c> (empty for the root).</summary>
    public static string Path(ParseResult parsed)
    {
        var names = new List<string>();
        for (SymbolResult? r = parsed.CommandResult; r is CommandResult c && c.Parent is not null; r = c.Parent)
            names.Insert(0, c.Command.Name);
        return string.Join(' ', names);
    }

    static bool LooksLikeFlag(string value) => value.Length > 1 && value[0] == '-' && !double.TryParse(value, out _);

    static HashSet<string> KnownFlags(Command command)
    {
        var set = new HashSet<string>(StringComparer.Ordinal);
        for (Command? c = command; c is not null; c = c.Parents.OfType<Command>().FirstOrDefault())
            foreach (var o in c.Options.Where(o => ReferenceEquals(c, command) || o.Recursive))
            {
                set.Add(o.Name);
                foreach (var a in o.Aliases) set.Add(a);
            }
        return set;
    }

    static int Distance(string a, string b)
    {
        var d = new int[b.Length + 1];
        for (var j = 0; j <= b.Length; j++) d[j] = j;
        for (var i = 1; i <= a.Length; i++)
        {
            var prev = d[0];
            d[0] = i;
            for (var j = 1; j <= b.Length; j++)
            {
                var cur = d[j];
                d[j] = Math.Min(Math.Min(d[j] + 1, d[j - 1] + 1), prev + (a[i - 1] == b[j - 1] ? 0 : 1));
                prev = cur;
            }
        }
        return d[b.Length];
    }
}
