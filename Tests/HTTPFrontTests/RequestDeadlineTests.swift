import HTTPTypes
import NIOCore
import NIOEmbedded
import NIOHTTPTypes
import Testing

@testable import HTTPFront

/// The request deadline on virtual time: a client has `limit` to send a request's head and then
/// `limit` for its body; while the server works on a request nothing is timed.
@Suite("Request deadline")
struct RequestDeadlineTests {
    let limit = TimeAmount.seconds(30)

    /// A channel with the handler, connected at virtual time 0.
    func connected() throws -> (EmbeddedChannel, EmbeddedEventLoop) {
        let loop = EmbeddedEventLoop()
        let channel = EmbeddedChannel(handler: RequestDeadline(limit: limit), loop: loop)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        return (channel, loop)
    }

    static let head = HTTPRequestPart.head(HTTPRequest(method: .post, scheme: nil, authority: nil, path: "/"))

    /// A whole request arrives, `serverWorks` runs (the server's turn), the response goes out.
    func answer(on channel: EmbeddedChannel, while serverWorks: () -> Void = {}) throws {
        try channel.writeInbound(Self.head)
        try channel.writeInbound(HTTPRequestPart.end(nil))
        serverWorks()
        try channel.writeOutbound(HTTPResponsePart.head(HTTPResponse(status: .ok)))
        try channel.writeOutbound(HTTPResponsePart.end(nil))
    }

    /// The connection is open until `limit` from now has passed, and closed then.
    func expectClosed(
        _ channel: EmbeddedChannel, after limit: TimeAmount, on loop: EmbeddedEventLoop,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        loop.advanceTime(by: limit - .milliseconds(1))
        #expect(channel.isActive, "closed before its deadline", sourceLocation: sourceLocation)
        loop.advanceTime(by: .milliseconds(1))
        #expect(!channel.isActive, "still open at its deadline", sourceLocation: sourceLocation)
    }

    @Test("a connection that sends no request head is closed at the limit, not before")
    func noHead() throws {
        let (channel, loop) = try connected()
        expectClosed(channel, after: limit, on: loop)
    }

    @Test("a body that trickles in is cut at the limit after its head")
    func slowBody() throws {
        let (channel, loop) = try connected()
        loop.advanceTime(by: .seconds(20))
        try channel.writeInbound(Self.head)
        for _ in 0..<29 {
            loop.advanceTime(by: .seconds(1))
            try channel.writeInbound(HTTPRequestPart.body(ByteBuffer(string: "x")))
        }
        #expect(channel.isActive)  // 49 s after connecting, 29 s after the head
        loop.advanceTime(by: .seconds(1))
        #expect(!channel.isActive)
    }

    @Test("nothing is timed while the server works; the next head has the limit from the response's end")
    func serverTurnThenNextRequest() throws {
        let (channel, loop) = try connected()
        loop.advanceTime(by: .seconds(25))
        try answer(on: channel) {
            loop.advanceTime(by: .seconds(100))  // the server's turn: a long wait for a job
            #expect(channel.isActive)
        }
        expectClosed(channel, after: limit, on: loop)
    }

    @Test("a deadline moved by a request answered in time is checked again at its new time")
    func movedDeadline() throws {
        let (channel, loop) = try connected()
        // A request answered 10 s after connecting, then silence: the first check (30 s after
        // connecting) finds the deadline moved to 40 s and must look again then.
        loop.advanceTime(by: .seconds(10))
        try answer(on: channel)
        expectClosed(channel, after: limit, on: loop)
    }
}
