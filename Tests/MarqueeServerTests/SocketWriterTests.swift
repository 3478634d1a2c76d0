import Foundation
import NIOCore
import NIOEmbedded
import Testing

@testable import MarqueeServer

/// Counts flushes on their way to the socket.
private final class FlushCounter: ChannelOutboundHandler {
    typealias OutboundIn = ByteBuffer
    var flushes = 0
    func flush(context: ChannelHandlerContext) {
        flushes += 1
        context.flush()
    }
}

/// A socket as the gateway sets it up: an outbox with a sink, the frame writer next to the socket.
private struct TestSocket {
    let channel: EmbeddedChannel
    let outbox: Outbox
    let counter: FlushCounter

    init(writer: LoopWriter, loop: EmbeddedEventLoop, capacity: Int = 64) throws {
        channel = EmbeddedChannel(loop: loop)
        outbox = Outbox(capacity: capacity, sink: SocketSink(loop: writer))
        counter = FlushCounter()
        try channel.pipeline.syncOperations.addHandler(FrameWriteHandler(outbox: outbox))
        try channel.pipeline.syncOperations.addHandler(counter, position: .first)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 9)).wait()
    }

    /// The payloads written to the socket so far, from the frame headers.
    func written() throws -> [String] {
        var texts: [String] = []
        while var buffer = try channel.readOutbound(as: ByteBuffer.self) {
            while buffer.readableBytes > 0 {
                guard let first = buffer.readInteger(as: UInt8.self), let second = buffer.readInteger(as: UInt8.self) else { break }
                #expect(first == 0x81)  // FIN, text
                var length = Int(second)
                if length == 126 { length = Int(buffer.readInteger(as: UInt16.self) ?? 0) }
                if length == 127 { length = Int(buffer.readInteger(as: UInt64.self) ?? 0) }
                texts.append(buffer.readString(length: length) ?? "")
            }
        }
        return texts
    }
}

@Suite struct SocketWriterTests {
    @Test func aWireFrameCarriesTheTextFrameHeaderForEveryLength() {
        for length in [0, 5, 125, 126, 65535, 65536, 70000] {
            let text = String(repeating: "x", count: length)
            let frame = WireFrame(text: text)
            let header = length < 126 ? 2 : length <= 65535 ? 4 : 10
            #expect(frame.bytes.readableBytes == header + length)
            #expect(frame.bytes.getInteger(at: 0, as: UInt8.self) == 0x81)
            #expect(frame.payloadLength == length)
            #expect(frame.text == text)
        }
        #expect(WireFrame(text: "é").payloadLength == 2)
    }

    @Test func onePassWritesEverySocketsFramesThenFlushesEachOnce() throws {
        let loop = EmbeddedEventLoop()
        let metrics = HubMetrics()
        let writer = LoopWriter(eventLoop: loop, metrics: metrics)
        let sockets = try (0..<3).map { _ in try TestSocket(writer: writer, loop: loop) }
        let shared = WireFrame(text: #"{"event":"postgres_changes"}"#)
        let committed = Date(timeIntervalSinceNow: -0.010)
        for socket in sockets { #expect(socket.outbox.offer(.change(shared, committed: committed)) == .queued) }
        #expect(sockets[0].outbox.offer(.text("reply")) == .queued)
        // nothing is written until the loop runs its pass
        #expect(try sockets[0].channel.readOutbound(as: ByteBuffer.self) == nil)
        #expect(sockets.allSatisfy { $0.counter.flushes == 0 })
        loop.run()
        #expect(try sockets[0].written() == [#"{"event":"postgres_changes"}"#, "reply"])
        #expect(try sockets[1].written() == [#"{"event":"postgres_changes"}"#])
        #expect(try sockets[2].written() == [#"{"event":"postgres_changes"}"#])
        #expect(sockets.map(\.counter.flushes) == [1, 1, 1])
        #expect(sockets.allSatisfy { $0.outbox.depth == 0 })
        // commit→send is observed once per change frame written
        #expect(metrics.registry.value("marquee_commit_to_send_seconds_count") == 3)

        // the next frames are written in a pass of their own
        #expect(sockets[1].outbox.offer(.text("later")) == .queued)
        loop.run()
        #expect(try sockets[1].written() == ["later"])
        #expect(sockets.map(\.counter.flushes) == [1, 2, 1])
    }

    @Test func aSocketThatCannotTakeMoreKeepsItsFramesUntilItCanOrOverflows() async throws {
        let loop = EmbeddedEventLoop()
        let writer = LoopWriter(eventLoop: loop, metrics: HubMetrics())
        let slow = try TestSocket(writer: writer, loop: loop, capacity: 4)
        let fast = try TestSocket(writer: writer, loop: loop, capacity: 4)
        slow.channel.isWritable = false
        slow.channel.pipeline.fireChannelWritabilityChanged()
        for index in 0..<3 {
            slow.outbox.enqueue(.text("s\(index)"))
            fast.outbox.enqueue(.text("f\(index)"))
        }
        loop.run()
        #expect(try fast.written() == ["f0", "f1", "f2"])
        #expect(try slow.written().isEmpty)
        #expect(slow.outbox.depth == 3)
        // writable again: the queued frames go out in the next pass
        slow.channel.isWritable = true
        slow.channel.pipeline.fireChannelWritabilityChanged()
        loop.run()
        #expect(try slow.written() == ["s0", "s1", "s2"])

        // stuck for good: past its capacity the queue is dropped and the socket is told to resync
        slow.channel.isWritable = false
        slow.channel.pipeline.fireChannelWritabilityChanged()
        for index in 0..<4 { #expect(slow.outbox.offer(.text("t\(index)")) == .queued) }
        #expect(slow.outbox.offer(.text("one too many")) == .overflowedNow)
        #expect(slow.outbox.offer(.text("after")) == .rejected)
        #expect(slow.outbox.overflowed)
        let slowOutbox = slow.outbox
        let close = try await withDeadline(.seconds(5), "the close frame") { await slowOutbox.next() }
        #expect(close == Outbox.overflowClose)
        loop.run()
        #expect(try slow.written().isEmpty)
        // the other socket is unaffected
        fast.outbox.enqueue(.text("f3"))
        loop.run()
        #expect(try fast.written() == ["f3"])
    }

    @Test func finishingDropsQueuedFramesAndEndsTheReader() async throws {
        let loop = EmbeddedEventLoop()
        let writer = LoopWriter(eventLoop: loop, metrics: HubMetrics())
        let socket = try TestSocket(writer: writer, loop: loop)
        socket.outbox.enqueue(.text("never written"))
        socket.outbox.finish()
        #expect(socket.outbox.offer(.text("late")) == .rejected)
        loop.run()
        #expect(try socket.written().isEmpty)
        let outbox = socket.outbox
        let next = try await withDeadline(.seconds(5), "the reader to end") { await outbox.next() }
        #expect(next == nil)
    }
}
