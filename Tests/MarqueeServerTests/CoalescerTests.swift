import Testing

@testable import MarqueeServer

@Suite struct CoalescerTests {
    /// Instants on a made-up timeline: no clock is read and nothing sleeps.
    let start = ContinuousClock.now
    func at(_ milliseconds: Int) -> ContinuousClock.Instant { start.advanced(by: .milliseconds(milliseconds)) }

    @Test func theFirstVersionGoesAtOnceAndTheNewestPendingOneWhenTheWindowEnds() {
        var coalescer = Coalescer<ContinuousClock.Instant, Int>(interval: .milliseconds(100))
        #expect(coalescer.offer(1, key: "a", now: at(0)) == .sendNow)
        #expect(coalescer.offer(2, key: "a", now: at(10)) == .held)
        #expect(coalescer.offer(3, key: "a", now: at(40)) == .held)
        #expect(coalescer.nextDeadline == at(100))
        #expect(coalescer.due(now: at(99)).isEmpty)
        #expect(coalescer.due(now: at(100)) == [3])  // latest wins, 2 is never sent
        // sending 3 opened the next window
        #expect(coalescer.offer(4, key: "a", now: at(140)) == .held)
        #expect(coalescer.due(now: at(199)).isEmpty)
        #expect(coalescer.due(now: at(200)) == [4])
        // a window that ends with nothing pending forgets the row: its next version goes at once
        #expect(coalescer.due(now: at(300)).isEmpty)
        #expect(coalescer.count == 0 && coalescer.nextDeadline == nil)
        #expect(coalescer.offer(5, key: "a", now: at(301)) == .sendNow)
    }

    @Test func rowsHaveWindowsOfTheirOwn() {
        var coalescer = Coalescer<ContinuousClock.Instant, String>(interval: .milliseconds(100))
        #expect(coalescer.offer("a1", key: "a", now: at(0)) == .sendNow)
        #expect(coalescer.offer("b1", key: "b", now: at(30)) == .sendNow)
        #expect(coalescer.offer("a2", key: "a", now: at(40)) == .held)
        #expect(coalescer.offer("b2", key: "b", now: at(60)) == .held)
        #expect(coalescer.pendingCount == 2)
        #expect(coalescer.due(now: at(100)) == ["a2"])
        #expect(coalescer.nextDeadline == at(130))
        #expect(coalescer.due(now: at(130)) == ["b2"])
        // both windows ended late together: the earlier window's row first
        #expect(coalescer.offer("a3", key: "a", now: at(140)) == .held)
        #expect(coalescer.offer("b3", key: "b", now: at(160)) == .held)
        #expect(coalescer.due(now: at(400)) == ["a3", "b3"])
    }

    @Test func aVersionArrivingAfterAnOverdueWindowSupersedesThePendingOne() {
        var coalescer = Coalescer<ContinuousClock.Instant, Int>(interval: .milliseconds(100))
        #expect(coalescer.offer(1, key: "a", now: at(0)) == .sendNow)
        #expect(coalescer.offer(2, key: "a", now: at(40)) == .held)
        // the timer is late: 3 arrives after the window ended but before due() ran; 3 goes now and 2 never does
        #expect(coalescer.offer(3, key: "a", now: at(120)) == .sendNow)
        #expect(coalescer.due(now: at(125)).isEmpty)
        #expect(coalescer.pendingCount == 0)
    }

    @Test func twoHundredChangesASecondBecomeTenDeliveriesASecondEndingWithTheLast() {
        var coalescer = Coalescer<ContinuousClock.Instant, Int>(interval: .milliseconds(100))
        var sent: [Int] = []
        var next = coalescer.nextDeadline
        for version in 1...200 {  // one second, a version every 5 ms
            let now = at(version * 5)
            if let deadline = next, deadline <= now { sent += coalescer.due(now: deadline) }
            if coalescer.offer(version, key: "hot", now: now) == .sendNow { sent.append(version) }
            next = coalescer.nextDeadline
        }
        while let deadline = coalescer.nextDeadline { sent += coalescer.due(now: deadline) }
        #expect(sent.count <= 12)
        #expect(sent.last == 200)
        #expect(sent == sent.sorted())
    }

    @Test func aWindowClosedLateDoesNotMakeTheNextOneEndLate() {
        var coalescer = Coalescer<ContinuousClock.Instant, Int>(interval: .milliseconds(100))
        #expect(coalescer.offer(1, key: "a", now: at(0)) == .sendNow)
        #expect(coalescer.offer(2, key: "a", now: at(30)) == .held)
        #expect(coalescer.due(now: at(130)) == [2])  // closed 30 ms late
        #expect(coalescer.nextDeadline == at(200))  // on schedule, not at 230
        #expect(coalescer.offer(3, key: "a", now: at(140)) == .held)
        #expect(coalescer.due(now: at(200)) == [3])
        #expect(coalescer.nextDeadline == at(300))
        // closed so late that the scheduled end has passed too: the next window is a whole interval from now
        #expect(coalescer.offer(4, key: "a", now: at(240)) == .held)
        #expect(coalescer.due(now: at(420)) == [4])
        #expect(coalescer.nextDeadline == at(520))
    }

    @Test func aVersionSentAfterAnOverdueWindowKeepsTheSchedule() {
        var coalescer = Coalescer<ContinuousClock.Instant, Int>(interval: .milliseconds(100))
        #expect(coalescer.offer(1, key: "a", now: at(0)) == .sendNow)
        #expect(coalescer.offer(2, key: "a", now: at(40)) == .held)
        // the timer has not run yet at 110: 3 goes now, and the window it opens ends when the next one was due
        #expect(coalescer.offer(3, key: "a", now: at(110)) == .sendNow)
        #expect(coalescer.nextDeadline == at(200))
        #expect(coalescer.offer(4, key: "a", now: at(140)) == .held)
        #expect(coalescer.due(now: at(200)) == [4])
    }

    @Test func aLoopThatIsAlwaysLateStillGivesAVersionPerInterval() {
        // a version every 5 ms for two seconds; the loop that runs the timer and reads the feed is busy for 30 ms after
        // every window's end: the window is closed 30 ms late, and the versions of those 30 ms arrive right after
        // (no tolerance, so that every version after the first waits for its window's end)
        var coalescer = Coalescer<ContinuousClock.Instant, Int>(interval: .milliseconds(100), tolerance: .zero)
        var sent: [Int] = []
        var stalled: [Int] = []
        var busyUntil: ContinuousClock.Instant?
        for version in 1...400 {
            let now = at(version * 5)
            if busyUntil == nil, let deadline = coalescer.nextDeadline, deadline <= now { busyUntil = deadline.advanced(by: .milliseconds(30)) }
            if let until = busyUntil {
                if now < until {
                    stalled.append(version)
                    continue
                }
                sent += coalescer.due(now: until)
                for late in stalled where coalescer.offer(late, key: "hot", now: until) == .sendNow { sent.append(late) }
                stalled = []
                busyUntil = nil
            }
            if coalescer.offer(version, key: "hot", now: now) == .sendNow { sent.append(version) }
        }
        // 10 a second, as with a punctual timer; windows restarted from the late close would give one per 130 ms (15)
        #expect(sent.count >= 19 && sent.count <= 21)
        #expect(sent == sent.sorted())
    }

    @Test func aRowChangingAboutOncePerIntervalIsNeverHeldBackByJitter() {
        var coalescer = Coalescer<ContinuousClock.Instant, Int>(interval: .milliseconds(100))
        // ten changes a second, each read by the feed up to 40 ms early or late
        let jitter = [0, 35, -40, 10, 40, -30, 0, -40, 25, 5, -35, 40]
        for (index, offset) in jitter.enumerated() {
            #expect(coalescer.offer(index, key: "a", now: at(index * 100 + offset)) == .sendNow, "version \(index)")
        }
        // without the tolerance, a change read early waits for the end of the previous one's window
        var strict = Coalescer<ContinuousClock.Instant, Int>(interval: .milliseconds(100), tolerance: .zero)
        #expect(strict.offer(0, key: "a", now: at(10)) == .sendNow)
        #expect(strict.offer(1, key: "a", now: at(95)) == .held)
    }

    @Test func aRowChangingAllTheTimeGetsOneVersionPerIntervalWithTheTolerance() {
        var coalescer = Coalescer<ContinuousClock.Instant, Int>(interval: .milliseconds(100))
        var sent: [(version: Int, at: Int)] = []
        var timerAt = coalescer.nextDeadline
        for version in 1...400 {  // two seconds at 200 a second, with a punctual timer
            let ms = version * 5
            if let deadline = timerAt, deadline <= at(ms) {
                sent += coalescer.due(now: deadline).map { ($0, ms) }
            }
            if coalescer.offer(version, key: "hot", now: at(ms)) == .sendNow { sent.append((version, ms)) }
            timerAt = coalescer.nextDeadline
        }
        #expect(sent.count >= 20 && sent.count <= 22)
        // never two versions closer than interval − tolerance
        for (earlier, later) in zip(sent, sent.dropFirst()) { #expect(later.at - earlier.at >= 50) }
    }
}
