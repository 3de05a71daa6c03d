import ArgumentParser
import Glibc
import KeelCore

/// The `keel` command. Subcommands arrive with the issues that build them.
struct KeelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keel",
        abstract: "Align language models with human preferences (DPO, SimPO, TR-DPO, POET, VAR, DEFT, …).",
        version: Keel.version,
        subcommands: [RunCommand.self, ResumeCommand.self, StatusCommand.self, ReportCommand.self, ExportCommand.self,
                      DaemonCommand.self, WorkerCommand.self, LogsCommand.self, CancelCommand.self,
                      ValidateCommand.self, PlanCommand.self, PluginsCommand.self, PluginCommand.self,
                      GenerateCommand.self, ScoreCommand.self, EvalCommand.self, BenchCommand.self])
}

// Everything keel creates is owner-only (folders 0700, files 0600): var/ holds every recipe's text,
// prompts and answers (report.md), worker logs and weights, which may be private.
umask(0o077)
KeelCommand.main()
