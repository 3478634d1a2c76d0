/// Thrown when an operation did not finish in time.
public struct DeadlineExceeded: Error, CustomStringConvertible, Sendable {
    public var description: String { "the operation did not finish in time" }
}

/// Runs `operation`, cancelling it and throwing `DeadlineExceeded` if it takes longer than `duration`.
public func withDeadline<T: Sendable>(_ duration: Duration, _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await operation() }
        group.addTask {
            try await Task.sleep(for: duration)
            throw DeadlineExceeded()
        }
        defer { group.cancelAll() }
        guard let first = try await group.next() else { throw DeadlineExceeded() }
        return first
    }
}
