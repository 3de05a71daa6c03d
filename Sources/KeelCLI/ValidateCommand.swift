import ArgumentParser
import Foundation
import KeelCore

/// `keel validate FILE...`: every problem of every recipe, exit 0 only if all are valid.
struct ValidateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate", abstract: "Check recipes without running them; print every problem.")

    @Argument(help: "Recipe files (YAML).")
    var files: [String]

    @OptionGroup var varDirectory: VarDirectoryOption

    func run() throws {
        let loader = RecipeLoader(registry: keelPluginRegistry(loadingCustomPluginsOf: varDirectory.layout), protecting: [varDirectory.layout.varDirectory])
        var failed = 0
        for file in files {
            do {
                _ = try loader.load(URL(fileURLWithPath: file), displayName: file)
                print("\(file): ok")
            } catch let errors as RecipeErrors {
                failed += 1
                printError(errors.description)
            }
        }
        if failed > 0 {
            printError("\(failed) of \(files.count) recipe\(files.count == 1 ? "" : "s") invalid")
            throw ExitCode.failure
        }
    }
}

func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}
