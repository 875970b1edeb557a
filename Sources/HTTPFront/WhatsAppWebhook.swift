import Crypto
import Foundation
import JSON
import JobQueue

/// The WhatsApp Cloud API webhook: its signature, and the jobs a notification becomes.
public enum WhatsAppWebhook {
    /// True when `header` (`X-Hub-Signature-256: sha256=<hex>`) is the HMAC-SHA256 of the raw
    /// `body` under `secret`, compared in constant time.
    public static func isSigned(_ body: some DataProtocol, header: String?, secret: String) -> Bool {
        guard let header, header.hasPrefix("sha256="), let signature = hexBytes(header.dropFirst(7)) else {
            return false
        }
        return HMAC<SHA256>.isValidAuthenticationCode(
            signature, authenticating: body, using: SymmetricKey(data: Data(secret.utf8)))
    }

    /// One `contact.upsert` payload per sender of an inbound message, on the channel whose
    /// number received it (`metadata.display_phone_number`), named as the sender's profile
    /// says. A sender of several messages in one notification is one job; status-only changes
    /// (deliveries, reads) give none. The organization is the channel's, as for any trusted
    /// producer.
    public static func payloads(_ notification: JSONValue) -> [JSONValue] {
        var payloads: [JSONValue] = []
        var seen = Set<String>()
        for entry in notification["entry"]?.arrayValue ?? [] {
            for change in entry["changes"]?.arrayValue ?? [] {
                guard let value = change["value"],
                    let channel = value["metadata"]?["display_phone_number"]?.stringValue
                else { continue }
                var names: [String: String] = [:]
                for contact in value["contacts"]?.arrayValue ?? [] {
                    if let id = contact["wa_id"]?.stringValue, let name = contact["profile"]?["name"]?.stringValue {
                        names[id] = name
                    }
                }
                for message in value["messages"]?.arrayValue ?? [] {
                    guard let sender = message["from"]?.stringValue, seen.insert(channel + "|" + sender).inserted
                    else { continue }
                    var payload: [String: JSONValue] = [
                        "channel": "whatsapp", "channel_phone_number": .string(channel),
                        "contact_phone_number": .string(sender),
                    ]
                    if let name = names[sender] { payload["contact_name"] = .string(name) }
                    payloads.append(.object(payload))
                }
            }
        }
        return payloads
    }

    static func hexBytes(_ text: Substring) -> [UInt8]? {
        let digits = Array(text.utf8)
        guard digits.count % 2 == 0, !digits.isEmpty else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        var index = 0
        while index < digits.count {
            guard let high = nibble(digits[index]), let low = nibble(digits[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
            index += 2
        }
        return bytes
    }

    private static func nibble(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
