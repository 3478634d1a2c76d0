import Testing

@testable import MarqueeServer

@Suite struct PollBackoffTests {
    let start = ContinuousClock.now
    func at(_ milliseconds: Int) -> ContinuousClock.Instant { start.advanced(by: .milliseconds(milliseconds)) }

    func makeBackoff() -> PollBackoff {
        PollBackoff(min: .milliseconds(2), active: .milliseconds(5), max: .milliseconds(20), activeWindow: .seconds(1))
    }

    @Test func anIdleFeedBacksOffToTheLongestWait() {
        var backoff = makeBackoff()
        let waits = (0..<7).map { backoff.nextDelay(now: at($0)) }
        #expect(waits == [2, 4, 8, 16, 20, 20, 20].map { Duration.milliseconds($0) })
    }

    @Test func afterAChangeTheFeedPollsOftenForAWhileThenBacksOffAgain() {
        var backoff = makeBackoff()
        backoff.changed(now: at(0))
        let waits = (0..<5).map { backoff.nextDelay(now: at(10 + $0 * 5)) }
        #expect(waits == [2, 4, 5, 5, 5].map { Duration.milliseconds($0) })
        // a second after the last change the feed is idle again: the wait grows to the longest
        #expect(backoff.nextDelay(now: at(999)) == .milliseconds(5))
        #expect(backoff.nextDelay(now: at(1000)) == .milliseconds(5))
        #expect(backoff.nextDelay(now: at(1005)) == .milliseconds(10))
        #expect(backoff.nextDelay(now: at(1015)) == .milliseconds(20))
        // a new change starts over
        backoff.changed(now: at(2000))
        #expect(backoff.nextDelay(now: at(2001)) == .milliseconds(2))
    }
}
