import Foundation
import Glibc
import XCTest
@testable import KeelDaemon

final class InstanceLockTests: XCTestCase {
    private func makeVarDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("keel-lock-\(UUID().uuidString)/var")
        addTeardownBlock { try? FileManager.default.removeItem(at: url.deletingLastPathComponent()) }
        return url
    }

    func testSecondLockIsRefusedNamingTheHolderAndFreedOnRelease() throws {
        let varDirectory = try makeVarDirectory()
        let first = try InstanceLock(varDirectory: varDirectory)
        let lockPath = varDirectory.appendingPathComponent("daemon.lock").path
        XCTAssertEqual(try String(contentsOfFile: lockPath, encoding: .utf8), "\(getpid())\n")
        // flock locks belong to the open file description, so a second open in this process conflicts too.
        XCTAssertThrowsError(try InstanceLock(varDirectory: varDirectory)) { error in
            XCTAssertEqual(error as? InstanceLockError, .heldByAnotherDaemon(path: lockPath, pid: getpid()))
            XCTAssertEqual("\(error)", "another keel daemon (pid \(getpid())) already holds \(lockPath); stop it first")
        }
        first.release()
        XCTAssertNoThrow(try InstanceLock(varDirectory: varDirectory))
    }

    /// Another process holds the lock (util-linux flock around `cat`, which exits when we close its
    /// stdin); the holder's pid is named, and the lock is ours once that process is gone.
    func testLockHeldByAnotherProcess() throws {
        let varDirectory = try makeVarDirectory()
        try FileManager.default.createDirectory(at: varDirectory, withIntermediateDirectories: true)
        let lockPath = varDirectory.appendingPathComponent("daemon.lock").path
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: "/bin/sh")
        holder.arguments = ["-c", "echo $$ > \"$0\"; exec flock --close \"$0\" cat", lockPath]
        let stdin = Pipe()
        holder.standardInput = stdin
        try holder.run()

        // Wait until the holder has the lock, probing with a raw flock that writes nothing.
        let probe = open(lockPath, O_RDWR | O_CREAT, 0o644)
        defer { close(probe) }
        let deadline = Date().addingTimeInterval(5)
        while flock(probe, LOCK_EX | LOCK_NB) == 0 && Date() < deadline {
            flock(probe, LOCK_UN)
            Thread.sleep(forTimeInterval: 0.01)
        }
        XCTAssertThrowsError(try InstanceLock(varDirectory: varDirectory)) {
            XCTAssertEqual($0 as? InstanceLockError, .heldByAnotherDaemon(path: lockPath, pid: holder.processIdentifier))
        }

        try stdin.fileHandleForWriting.close()
        holder.waitUntilExit()
        XCTAssertNoThrow(try InstanceLock(varDirectory: varDirectory))
    }
}
