/// How long a job waits before its next attempt after a transient failure.
///
/// Exponential: `base × 2^(attempt−1)`, capped at `maximum`, then scaled by a random factor in
/// `[1 − jitter, 1]` so that jobs that failed together do not all return at once.
public struct RetryPolicy: Sendable, Hashable {
    public var base: Duration
    public var maximum: Duration
    /// The fraction of the delay that is random, from 0 (none) to 1.
    public var jitter: Double

    public init(base: Duration = .seconds(1), maximum: Duration = .seconds(3600), jitter: Double = 0.5) {
        self.base = base
        self.maximum = maximum
        self.jitter = min(1, max(0, jitter))
    }

    /// The delay after the failure of attempt number `attempt` (1 for the first).
    public func delay(afterAttempt attempt: Int, random: Double = Double.random(in: 0...1)) -> Duration {
        let exponent = min(max(attempt - 1, 0), 40)
        let baseMilliseconds = Double(base.components.seconds) * 1000
            + Double(base.components.attoseconds) / 1e15
        let maximumMilliseconds = Double(maximum.components.seconds) * 1000
            + Double(maximum.components.attoseconds) / 1e15
        let uncapped = baseMilliseconds * pow2(exponent)
        let capped = min(uncapped, maximumMilliseconds)
        let scaled = capped * (1 - jitter * random)
        return .milliseconds(Int64(scaled.rounded()))
    }

    private func pow2(_ n: Int) -> Double {
        var value = 1.0
        for _ in 0..<n { value *= 2 }
        return value
    }
}
