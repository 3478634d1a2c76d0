import Dispatch

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The process's open-file limit, which every socket counts against. Running out of descriptors is not a refusal
/// like any other: the runtime itself needs a few (libdispatch aborts the process when it cannot open one), so the
/// server raises its soft limit as far as it may and keeps its sockets well below it.
public enum FileLimit {
    /// Raises the soft limit to the hard one; returns the soft limit now in force (nil if it cannot be read).
    @discardableResult
    public static func raiseToMaximum() -> Int? {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return nil }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        return limit.rlim_cur == rlim_t.max ? Int.max : Int(clamping: limit.rlim_cur)
    }

    /// How many connections (HTTP and WebSocket together) to hold with `descriptors` available: all but a reserve for
    /// the database pool, files, connections being refused and the runtime (a tenth of the limit, at least 256).
    public static func socketBudget(descriptors: Int) -> Int {
        guard descriptors != Int.max else { return Int.max }
        return max(16, descriptors - max(256, descriptors / 10))
    }

    /// Arms one timer of each clock the runtime's timers use, at start while descriptors are plentiful: libdispatch
    /// opens a timer descriptor per clock the first time one is armed, and aborts the process when it cannot.
    public static func prepareRuntimeTimers() async {
        try? await Task.sleep(for: .milliseconds(1))
        try? await SuspendingClock().sleep(for: .milliseconds(1))
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().asyncAfter(wallDeadline: .now() + .milliseconds(1)) { done.resume() }
        }
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(1)) { done.resume() }
        }
    }
}
