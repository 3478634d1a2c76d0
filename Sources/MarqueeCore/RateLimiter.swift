import Foundation

/// A token bucket: `rate` events per second on average, bursts up to `burst`. Pure: time is passed in.
public struct TokenBucket: Sendable, Equatable {
    public let rate: Double
    public let burst: Double
    private var tokens: Double
    private var last: Double?

    public init(rate: Double, burst: Double? = nil) {
        self.rate = rate
        self.burst = burst ?? max(1, rate)
        self.tokens = self.burst
    }

    /// Takes one token at `now` (seconds on any monotonic scale); false when the bucket is empty.
    public mutating func take(now: Double) -> Bool {
        if let last { tokens = min(burst, tokens + max(0, now - last) * rate) }
        last = max(now, last ?? now)
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }

    /// Spends `amount` tokens at `now`, going into debt if need be; returns how many seconds until the balance is
    /// back to zero (0 when it did not go negative). For budgets (bytes) where one large item must still pass.
    public mutating func spend(_ amount: Double, now: Double) -> Double {
        if let last { tokens = min(burst, tokens + max(0, now - last) * rate) }
        last = max(now, last ?? now)
        tokens -= amount
        return tokens >= 0 ? 0 : -tokens / rate
    }
}
