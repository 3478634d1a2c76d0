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
        #expect(coalescer.offer(3, key: "a", now: at(50)) == .held)
        #expect(coalescer.nextDeadline == at(100))
        #expect(coalescer.due(now: at(99)).isEmpty)
        #expect(coalescer.due(now: at(100)) == [3])  // latest wins, 2 is never sent
        // sending 3 opened the next window
        #expect(coalescer.offer(4, key: "a", now: at(150)) == .held)
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
        #expect(coalescer.offer("a3", key: "a", now: at(150)) == .held)
        #expect(coalescer.offer("b3", key: "b", now: at(160)) == .held)
        #expect(coalescer.due(now: at(400)) == ["a3", "b3"])
    }

    @Test func aVersionArrivingAfterAnOverdueWindowSupersedesThePendingOne() {
        var coalescer = Coalescer<ContinuousClock.Instant, Int>(interval: .milliseconds(100))
        #expect(coalescer.offer(1, key: "a", now: at(0)) == .sendNow)
        #expect(coalescer.offer(2, key: "a", now: at(90)) == .held)
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
}
