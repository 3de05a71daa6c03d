import Foundation
import Glibc

/// What a `keel worker` process does to stay tied to its daemon.
public enum WorkerSupervision {
    /// Sends SIGTERM to this process when its parent (the daemon) is gone, checked every `interval`:
    /// a worker must not train on unsupervised after its daemon was SIGKILLed, because the next daemon
    /// resumes the run from its latest checkpoint. `prctl(PR_SET_PDEATHSIG)` would do this in the kernel,
    /// but it is variadic and so not callable from Swift. SIGTERM (not SIGKILL) so that the worker stops
    /// exactly as when the daemon shuts down.
    public static func terminateWhenParentExits(interval: TimeInterval = 0.25) {
        let parent = getppid()
        let thread = Thread {
            while getppid() == parent { Thread.sleep(forTimeInterval: interval) }
            kill(getpid(), SIGTERM)
        }
        thread.name = "keel.worker.parent-watch"
        thread.start()
    }
}
