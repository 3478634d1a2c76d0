import MarqueeCore
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import MarqueeServer

@Suite struct ConnectionBudgetTests {
    let a = IPAddress("127.0.0.2")!
    let b = IPAddress("127.0.0.3")!

    /// An open channel (an embedded one is active once connected); closing it makes it inactive.
    func openChannel() throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        return channel
    }

    func admitted(_ budget: ConnectionBudget, _ address: IPAddress, exempt: Bool = false, at now: NIODeadline = .now()) throws -> (
        ConnectionBudget.Connection, EmbeddedChannel
    ) {
        let channel = try openChannel()
        guard case .admitted(let connection) = budget.admit(address: address, exempt: exempt, channel: channel, now: now) else {
            Issue.record("refused")
            throw ChannelError.ioOnClosedChannel
        }
        return (connection, channel)
    }

    func refusal(_ budget: ConnectionBudget, _ address: IPAddress, exempt: Bool = false, at now: NIODeadline = .now()) -> ConnectionBudget.Refusal? {
        if case .refused(let why) = budget.admit(address: address, exempt: exempt, channel: EmbeddedChannel(), now: now) { return why }
        return nil
    }

    @Test func capsEachAddressButNotTrustedProxies() throws {
        let budget = ConnectionBudget(limits: .init(maxConnections: 100, maxPerAddress: 2))
        let first = try admitted(budget, a)
        _ = try admitted(budget, a)
        #expect(refusal(budget, a) == .perAddress)
        _ = try admitted(budget, b)
        for _ in 0..<5 { _ = try admitted(budget, a, exempt: true) }
        #expect(budget.count(from: a) == 7 && budget.count() == 8)
        budget.release(first.0)
        budget.release(first.0)  // twice is once
        #expect(budget.count(from: a) == 6 && budget.count() == 7)
        // a closed connection makes room for its address
        let second = try admitted(budget, b)
        #expect(refusal(budget, b) == .perAddress)
        budget.release(second.0)
        #expect(refusal(budget, b) == nil)
    }

    @Test func aFullBudgetShedsTheLongestIdleConnectionsThatNeverUpgraded() throws {
        let start = NIODeadline.now()
        let budget = ConnectionBudget(limits: .init(maxConnections: 6, maxPerAddress: 100, shedBatch: 2))
        // six connections, active at start + 0…5 s: one a socket, one in the middle of a request
        var open: [(ConnectionBudget.Connection, EmbeddedChannel)] = []
        for i in 0..<6 { open.append(try admitted(budget, a, at: start + .seconds(Int64(i)))) }
        budget.upgraded(open[0].0)
        open[1].0.setBusy(true)
        // the next one sheds the two idle ones active longest ago (2 and 3), which are closed and uncounted at once
        _ = try admitted(budget, b, at: start + .seconds(10))
        #expect(open.map { $0.1.isActive } == [true, true, false, false, true, true])
        #expect(budget.count() == 5)
        // the room made by the batch takes the next one without a scan
        _ = try admitted(budget, b, at: start + .seconds(11))
        #expect(budget.count() == 6)
        // closing a shed connection does not uncount it twice
        budget.release(open[2].0)
        #expect(budget.count() == 6)
    }

    @Test func socketsAndBusyConnectionsAreNeverShed() throws {
        let start = NIODeadline.now()
        let budget = ConnectionBudget(limits: .init(maxConnections: 3, maxPerAddress: 100))
        var open: [(ConnectionBudget.Connection, EmbeddedChannel)] = []
        for i in 0..<3 { open.append(try admitted(budget, a, at: start + .seconds(Int64(i)))) }
        budget.upgraded(open[0].0)
        budget.upgraded(open[1].0)
        open[2].0.setBusy(true)
        #expect(refusal(budget, b, at: start + .seconds(5)) == .full)
        #expect(open.allSatisfy { $0.1.isActive })
        // right after a fruitless scan the next one is refused without another scan, even if room appears to be shed
        open[2].0.setBusy(false)
        #expect(refusal(budget, b, at: start + .seconds(5) + .milliseconds(10)) == .full)
        let late = try admitted(budget, b, at: start + .seconds(6))
        late.0.setBusy(true)
        #expect(!open[2].1.isActive)
        // a socket that closes makes room
        budget.release(open[0].0)
        let later = try admitted(budget, b, at: start + .seconds(7))
        later.0.setBusy(true)
        #expect(refusal(budget, b, at: start + .seconds(8)) == .full)
    }

    @Test func refusalsAreLoggedAtMostEveryTenSeconds() {
        let budget = ConnectionBudget(limits: .init())
        let start = NIODeadline.now()
        #expect(budget.shouldLog(.full, now: start) == 1)
        #expect(budget.shouldLog(.full, now: start + .seconds(1)) == nil)
        #expect(budget.shouldLog(.perAddress, now: start + .seconds(1)) == 1)
        #expect(budget.shouldLog(.full, now: start + .seconds(2)) == nil)
        #expect(budget.shouldLog(.full, now: start + .seconds(11)) == 3)
    }
}

@Suite struct RequestLineSnifferTests {
    func sniff(_ chunks: String...) -> RequestLineSniffer {
        let sniffer = RequestLineSniffer()
        for chunk in chunks { sniffer.capture(ByteBuffer(string: chunk)) }
        return sniffer
    }

    @Test func tellsUnknownMethodsFromBrokenLines() {
        #expect(sniff("FROB /api HTTP/1.1\r\nHost: x\r\n\r\n").hasRequestLineShape)
        #expect(sniff("\r\n", "FR", "OB /api HTT").hasRequestLineShape)  // incomplete, but a method and a target
        #expect(sniff("BREW /pot HTTP/1.1\n").hasRequestLineShape)
        #expect(sniff("FROB /" + String(repeating: "a", count: 500) + " HTTP/1.1\r\n").hasRequestLineShape)
        #expect(!sniff("hello\r\n\r\n").hasRequestLineShape)
        #expect(!sniff("FROB\r\n").hasRequestLineShape)
        #expect(!sniff("FROB /api\r\n").hasRequestLineShape)
        #expect(!sniff("FROB /a b HTTP/1.1\r\n").hasRequestLineShape)
        #expect(!sniff("FROB /api HTTP/1.1 extra\r\n").hasRequestLineShape)
        #expect(!sniff("FR{B /api HTTP/1.1\r\n").hasRequestLineShape)
        #expect(!sniff("\u{16}\u{03}\u{01}\u{02}\u{00}").hasRequestLineShape)  // a TLS hello
        #expect(!sniff("").sawBytes && !sniff("\r\n\r\n").sawBytes && sniff("G").sawBytes)
    }

    @Test func knowsWhetherTheLineEnded() {
        #expect(!sniff("GET /" + String(repeating: "a", count: 1000)).lineComplete)
        #expect(sniff("GET /" + String(repeating: "a", count: 1000), " HTTP/1.1\r\nX: y").lineComplete)
        let sniffer = sniff("GET / HTTP/1.1\r\n")
        sniffer.reset()
        #expect(!sniffer.lineComplete && !sniffer.sawBytes && sniffer.isCapturing)
    }

    @Test func answersEachParseError() {
        let line = sniff("FROB / HTTP/1.1\r\n")
        let broken = sniff("garbage\r\n")
        let longLine = sniff("GET /" + String(repeating: "a", count: 1000))
        #expect(HTTPRequestGuard.answer(to: .invalidMethod, sniffer: line).status.code == 501)
        #expect(HTTPRequestGuard.answer(to: .invalidMethod, sniffer: broken).status.code == 400)
        #expect(HTTPRequestGuard.answer(to: .headerOverflow, sniffer: line).status.code == 431)
        #expect(HTTPRequestGuard.answer(to: .headerOverflow, sniffer: longLine).status.code == 414)
        #expect(HTTPRequestGuard.answer(to: .unexpectedContentLength, sniffer: line).code == "invalid_framing")
        #expect(HTTPRequestGuard.answer(to: .invalidVersion, sniffer: line).status.code == 400)
    }
}
