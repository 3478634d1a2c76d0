import Synchronization

/// A value that tasks can wait on: `wait(until:)` suspends until the value satisfies a condition, checked again at
/// every `update`, and returns at once when the waiting task is cancelled. The tests' one way of waiting for a state
/// (a change counter, the proxy's gate, the reservation burst's budget) rather than for time.
final class Awaitable<Value: Sendable>: Sendable {
    private struct Waiter {
        let condition: @Sendable (Value) -> Bool
        let continuation: CheckedContinuation<Void, Never>
    }
    private struct State {
        var value: Value
        var waiters: [Int: Waiter] = [:]
        var nextID = 0
    }
    private let state: Mutex<State>

    init(_ value: Value) { state = Mutex(State(value: value)) }

    var value: Value { state.withLock { $0.value } }

    /// Changes the value and wakes every waiter whose condition now holds; returns what `change` returns.
    @discardableResult
    func update<R: Sendable>(_ change: (inout Value) -> R) -> R {
        let (result, ready) = state.withLock { state in
            let result = change(&state.value)
            var ready: [CheckedContinuation<Void, Never>] = []
            for (id, waiter) in state.waiters where waiter.condition(state.value) {
                ready.append(waiter.continuation)
                state.waiters[id] = nil
            }
            return (result, ready)
        }
        for continuation in ready { continuation.resume() }
        return result
    }

    /// Returns once `condition` holds for the value (at once if it holds now), or when the waiting task is cancelled.
    func wait(until condition: @escaping @Sendable (Value) -> Bool) async {
        let id = state.withLock { state in
            state.nextID += 1
            return state.nextID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = state.withLock { state in
                    if condition(state.value) || Task.isCancelled { return true }
                    state.waiters[id] = Waiter(condition: condition, continuation: continuation)
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: id) }?.continuation.resume()
        }
    }
}
