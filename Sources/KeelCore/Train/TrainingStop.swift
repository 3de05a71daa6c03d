import Dispatch
import Foundation
import Synchronization

/// A cooperative stop: SIGTERM or SIGINT asks the trainer to finish its current optimizer step, write a
/// checkpoint, and return, so that a stopped run (daemon shutdown, `keel cancel`, Ctrl-C on `keel run`)
/// loses no work and resumes exactly where it stopped. A second signal is not special: the daemon's
/// stop timeout (SIGKILL) bounds a step that takes too long, and resume stays exact either way.
public enum TrainingStop {
    private static let requested = Atomic<Bool>(false)
    private static let sources = Mutex<[DispatchSourceSignal]>([])

    public static var isRequested: Bool { requested.load(ordering: .acquiring) }

    public static func request() { requested.store(true, ordering: .releasing) }

    /// Routes SIGTERM and SIGINT to `request()` (through dispatch sources: a signal handler itself may
    /// not run Swift code).
    public static func installSignalHandlers() {
        sources.withLock { sources in
            guard sources.isEmpty else { return }
            for number in [SIGTERM, SIGINT] {
                signal(number, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
                source.setEventHandler { request() }
                source.resume()
                sources.append(source)
            }
        }
    }
}

/// Thrown by `Trainer.train` after the checkpoint that follows a stop request.
public struct TrainingStopped: Error, CustomStringConvertible {
    public let step: Int
    public var description: String { "stopped on request after step \(step) (checkpoint written)" }
}
