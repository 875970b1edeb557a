import NIOCore
import NIOHTTPTypes

/// Closes a connection whose client takes longer than `limit` to send a request: from the
/// connection's start, or the end of the previous response, to the request's head, and from the
/// head to the request's end. The idle timeout alone closes only connections that send
/// nothing; a client that sends a byte a second (a slow-loris) would otherwise hold its
/// connection as long as it likes. While the server works on a request nothing is timed here
/// (`--wait` bounds that).
final class RequestDeadline: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let limit: TimeAmount
    /// When the client's time runs out; nil while the server has the turn.
    private var deadline: NIODeadline?
    /// The one scheduled check, if any. Arming only moves ``deadline``: the check reschedules
    /// itself to the deadline it finds, so a request costs no scheduling (a scheduled task per
    /// request, armed and cancelled twice, was a few percent of `serve`'s CPU under load).
    private var timer: Scheduled<Void>?
    /// Requests whose head arrived and whose response has not ended.
    private var inProgress = 0

    init(limit: TimeAmount) {
        self.limit = limit
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { arm(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        arm(context)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            inProgress += 1
            arm(context)  // the body must follow within the limit too
        case .end:
            disarm()  // the request is whole: the server's turn
        case .body:
            break
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) {
            inProgress -= 1
            if inProgress == 0 { arm(context) }  // the next request's head
        }
        context.write(data, promise: promise)
    }

    func channelInactive(context: ChannelHandlerContext) {
        cancelTimer()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        cancelTimer()
    }

    private func arm(_ context: ChannelHandlerContext) {
        let deadline = context.eventLoop.now + limit
        self.deadline = deadline
        if timer == nil { schedule(at: deadline, context) }
    }

    private func disarm() {
        deadline = nil
    }

    private func schedule(at deadline: NIODeadline, _ context: ChannelHandlerContext) {
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(deadline: deadline) {
            let (handler, context) = bound.value
            handler.timer = nil
            guard let deadline = handler.deadline else { return }  // the server's turn now
            if deadline <= context.eventLoop.now {
                context.close(promise: nil)
            } else {
                handler.schedule(at: deadline, context)  // re-armed since: check again then
            }
        }
    }

    private func cancelTimer() {
        deadline = nil
        timer?.cancel()
        timer = nil
    }
}
