/// Waits until `condition` holds, checking every 50 ms, for at most `timeout`; returns
/// whether it held. Tests wait for what they expect with a deadline instead of sleeping a
/// fixed time, so they neither flake on a slow machine nor hang on a broken one.
public func eventually(timeout: Duration, _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(50))
    }
    return try await condition()
}
