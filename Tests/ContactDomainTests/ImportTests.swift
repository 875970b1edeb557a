import ContactDomain
import Foundation
import JSON
import JobQueue
import Postgres
import TestSupport
import Testing

/// `enqueue` as a CRM migration uses it: checked first against the organization, an import id,
/// `import status`, `import failures`, and the round trip of fixing and enqueueing again.
@Suite("Imports: check first, follow, and fix what failed")
struct ImportTests {
    /// A scratch directory for the files of one test.
    final class Files: Sendable {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("import-\(UUID().uuidString)")
        init() throws { try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true) }
        deinit { try? FileManager.default.removeItem(at: directory) }

        func write(_ name: String, _ text: String) throws -> String {
            let url = directory.appendingPathComponent(name)
            try text.write(to: url, atomically: true, encoding: .utf8)
            return url.path
        }

        func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

        func read(_ name: String) throws -> String { try String(contentsOfFile: path(name), encoding: .utf8) }
    }

    static func int(_ value: JSONValue?) -> Int {
        if case .number(let n)? = value { return n.intValue ?? 0 }
        return 0
    }

    static func cli(_ arguments: [String], _ database: PostgresConfiguration) async throws -> (status: Int32, output: String) {
        try await ChildProcess.run(TestBinaries.upsertWorker, arguments + ["--database-url", database.connectionString])
    }

    /// One NDJSON line of a contact on the organization's WhatsApp channel.
    static func row(_ org: Org, _ n: Int, _ extra: [String: JSONValue] = [:]) -> String {
        var payload: [String: JSONValue] = [
            "channel": "whatsapp", "channel_phone_number": .string(org.whatsappNumber),
            "contact_phone_number": .string("+56 9 7\(String(format: "%03d", n / 10_000)) \(String(format: "%04d", n % 10_000))"),
            "contact_name": .string("Persona \(n)"),
        ]
        payload.merge(extra) { _, new in new }
        return JSONValue.object(payload).jsonText
    }

    /// Nine rows: good ones on lines 1 and 9, one problem of every kind on lines 2 to 8.
    static func everyProblem(_ org: Org) -> String {
        [
            row(org, 1),
            row(org, 2, ["meta_data": "a text, not an object"]),
            row(org, 3, ["channel_phone_number": "+56 2 9999 0000"]),
            row(org, 4, ["stageId": .string(UUID().uuidString)]),
            row(org, 5, ["agentId": .string(org.inactiveAgent.uuidString)]),
            row(org, 6, ["custom_field_values": [["key": "no_such_field", "value": "x"]]]),
            row(org, 7, ["custom_field_values": [["key": "budget", "value": "lots"]]]),
            row(org, 8, ["custom_field_values": [["key": "plan", "value": "Pro"], ["key": "plan", "value": "Free"]]]),
            row(org, 9),
        ].joined(separator: "\n") + "\n"
    }

    @Test("every kind of row problem is reported by line (and CSV column), and nothing is enqueued")
    func everyKindOfProblem() async throws {
        try await Domain.withDatabase { db, c in
            let org = Org(201)
            try await c.run { c in try org.create(on: c) }
            let files = try Files()
            let file = try files.write("contacts.ndjson", Self.everyProblem(org))
            let result = try await Self.cli(["enqueue", file, "--api-key", org.apiKey], db)
            #expect(result.status == 1)
            for expected in [
                "line 2: meta_data:", "line 3: channel_identity: no active whatsapp channel",
                "line 4: stageId: no such pipeline stage", "line 5: agentId: no such active team member",
                "line 6: custom_field_values.no_such_field: no custom field", "line 7: custom_field_values.budget: not a number",
                "line 8: custom_field_values.plan:", "7 invalid row(s)",
            ] {
                #expect(result.output.contains(expected), "\(expected)\n\(result.output)")
            }
            #expect(!result.output.contains("line 1:") && !result.output.contains("line 9:"))
            #expect(try await Domain.count("SELECT count(*) FROM queue.jobs", on: c) == 0)
            #expect(try await Domain.count("SELECT count(*) FROM queue.imports", on: c) == 0)

            // CSV: the column of each problem.
            let csv = try files.write(
                "contacts.csv",
                """
                channel,channel_phone_number,contact_phone_number,contact_name,stageId,cf.budget
                whatsapp,\(org.whatsappNumber),+56 9 7000 0001,Ana,,100
                whatsapp,\(org.whatsappNumber),n/a,Bea,\(UUID().uuidString),lots

                """)
            let csvResult = try await Self.cli(["enqueue", csv, "--api-key", org.apiKey], db)
            #expect(csvResult.status == 1)
            for expected in ["line 3, column contact_phone_number:", "line 3, column stageId:", "line 3, column cf.budget: not a number"] {
                #expect(csvResult.output.contains(expected), "\(expected)\n\(csvResult.output)")
            }
            #expect(try await Domain.count("SELECT count(*) FROM queue.jobs", on: c) == 0)
        }
    }

    @Test("--skip-invalid enqueues the good rows and writes the bad ones, with reasons, as input that reads again")
    func skipInvalid() async throws {
        try await Domain.withDatabase { db, c in
            let org = Org(202)
            try await c.run { c in try org.create(on: c) }
            let files = try Files()
            let file = try files.write("contacts.ndjson", Self.everyProblem(org))
            let result = try await Self.cli(
                ["enqueue", file, "--api-key", org.apiKey, "--skip-invalid", "--rejects", files.path("rejects.ndjson")], db)
            #expect(result.status == 0, "\(result.output)")
            #expect(result.output.contains("enqueued 2 job(s)") && result.output.contains("7 invalid row(s) written to"))
            #expect(try await Domain.count("SELECT count(*) FROM queue.jobs WHERE import_id IS NOT NULL", on: c) == 2)
            #expect(try await Domain.count("SELECT count(*) FROM queue.jobs WHERE import_line IN (1, 9)", on: c) == 2)
            #expect(try await Domain.count("SELECT count(*) FROM queue.imports WHERE rows_accepted = 2 AND rows_rejected = 7", on: c) == 1)

            let rejects = try files.read("rejects.ndjson").split(separator: "\n").map { try JSONValue.parse(String($0)) }
            #expect(rejects.map { $0["error_line"] } == [2, 3, 4, 5, 6, 7, 8].map { .number(JSONNumber($0)) })
            #expect(rejects.map { $0["error_code"]?.stringValue ?? "" } == [
                "invalid_payload", "unknown_channel", "invalid_fields", "invalid_fields", "invalid_custom_field_keys",
                "invalid_custom_field_values", "invalid_custom_field_values",
            ])
            #expect(rejects[2]["error_details"]?.stringValue?.contains("stageId (no such pipeline stage") == true)
            #expect(rejects[0]["contact_name"] == "Persona 2", "the row as it was")

            // The rejects file is input again: its error columns are not part of the payload.
            let again = try await Self.cli(["enqueue", files.path("rejects.ndjson"), "--api-key", org.apiKey, "--dry-run"], db)
            #expect(again.status == 1)
            #expect(again.output.contains("7 valid") == false && again.output.contains("0 valid, 7 invalid"), "\(again.output)")
            #expect(!again.output.contains("error_"))

            // CSV rejects keep the file's columns.
            let csv = try files.write(
                "contacts.csv",
                """
                channel,channel_phone_number,contact_phone_number,contact_name,cf.budget
                whatsapp,\(org.whatsappNumber),+56 9 7000 0101,"Díaz, Ana",100
                whatsapp,\(org.whatsappNumber),+56 9 7000 0102,"Soto, Bea",lots

                """)
            let csvResult = try await Self.cli(
                ["enqueue", csv, "--api-key", org.apiKey, "--skip-invalid", "--rejects", files.path("rejects.csv")], db)
            #expect(csvResult.status == 0, "\(csvResult.output)")
            #expect(try files.read("rejects.csv") == """
                channel,channel_phone_number,contact_phone_number,contact_name,cf.budget,error_line,error_code,error_message,error_details
                whatsapp,\(org.whatsappNumber),+56 9 7000 0102,"Soto, Bea",lots,3,invalid_custom_field_values,some custom field values do not fit their definition,invalid_custom_field_values: budget (not a number)

                """)
        }
    }

    @Test("--dry-run checks and enqueues nothing; unknown and inactive organizations are refused before any row")
    func dryRunAndOrganizations() async throws {
        try await Domain.withDatabase { db, c in
            let org = Org(203), inactive = Org(204)
            try await c.run { c in
                try org.create(on: c)
                try inactive.create(on: c, active: false)
            }
            let files = try Files()
            let good = try files.write("good.ndjson", [Self.row(org, 1), Self.row(org, 2)].joined(separator: "\n"))
            let dry = try await Self.cli(["enqueue", good, "--api-key", org.apiKey, "--dry-run"], db)
            #expect(dry.status == 0 && dry.output.contains("2 valid, 0 invalid; nothing was enqueued (dry run)"), "\(dry.output)")
            let bad = try files.write("bad.ndjson", Self.everyProblem(org))
            let dryBad = try await Self.cli(["enqueue", bad, "--api-key", org.apiKey, "--dry-run"], db)
            #expect(dryBad.status == 1 && dryBad.output.contains("2 valid, 7 invalid"), "\(dryBad.output)")

            let unknown = UUID()
            let refusedUnknown = try await Self.cli(["enqueue", good, "--client-id", unknown.uuidString], db)
            #expect(refusedUnknown.status == 1)
            #expect(refusedUnknown.output.contains("\(unknown.uuidString.lowercased()) does not exist or is inactive"))
            let refusedInactive = try await Self.cli(["enqueue", good, "--client-id", inactive.client.uuidString], db)
            #expect(refusedInactive.status == 1 && refusedInactive.output.contains("does not exist or is inactive"))
            let refusedKey = try await Self.cli(["enqueue", good, "--api-key", "not-a-key"], db)
            #expect(refusedKey.status == 1 && refusedKey.output.contains("unknown or revoked"))
            // Rows naming the inactive organization's channel, without --client-id, are each refused.
            let viaChannel = try files.write("inactive.ndjson", Self.row(inactive, 1) + "\n")
            let refusedRows = try await Self.cli(["enqueue", viaChannel], db)
            #expect(refusedRows.status == 1 && refusedRows.output.contains("line 1: client_id: the channel's client is inactive"), "\(refusedRows.output)")
            #expect(try await Domain.count("SELECT count(*) FROM queue.jobs", on: c) == 0)
            #expect(try await Domain.count("SELECT count(*) FROM queue.imports", on: c) == 0)
        }
    }

    @Test("import status during and after a drain, import failures, and the round trip: fixed rows succeed, nothing duplicated")
    func statusFailuresRoundTrip() async throws {
        try await Domain.withDatabase { db, c in
            let org = Org(205)
            try await c.run { c in try org.create(on: c) }
            let files = try Files()
            let rows = 3_000
            // Four rows name the second pipeline stage; the CRM's admin deletes it after the
            // import was checked and enqueued, so they fail at the worker.
            let doomed = Set([17, 500, 1_234, 2_999])
            var csv = "channel,channel_phone_number,contact_phone_number,contact_name,stageId,cf.rut,meta_data.source\n"
            for n in 1...rows {
                let stage = doomed.contains(n) ? org.stage2.uuidString.lowercased() : ""
                csv += "whatsapp,\(org.whatsappNumber),+56 9 7\(String(format: "%03d", n / 10_000)) \(String(format: "%04d", n % 10_000)),\"Persona, \(n)\",\(stage),\(10_000_000 + n)-\(n % 10),crm\n"
            }
            let file = try files.write("export.csv", csv)
            let enqueued = try await Self.cli(["enqueue", file, "--api-key", org.apiKey, "--idempotent"], db)
            #expect(enqueued.status == 0, "\(enqueued.output)")
            let id = try #require(enqueued.output.split(separator: " ").dropFirst().first.map { String($0.dropLast()) })
            try await c.run { c in _ = try c.execute("DELETE FROM crm.stages WHERE id = \(org.stage2)") }

            let before = try await Self.cli(["import", "status", id, "--json"], db)
            let waiting = try JSONValue.parse(before.output)
            #expect(waiting["jobs"]?["ready"] == .number(JSONNumber(rows)) && waiting["rows_accepted"] == .number(JSONNumber(rows)))
            #expect(waiting["file_name"] == "export.csv" && waiting["format"] == "csv")

            // During: a slow worker, and the status read while it works.
            let worker = try ChildProcess(
                TestBinaries.upsertWorker,
                ["run", "--drain", "--concurrency", "1", "--batch-size", "20", "--database-url", db.connectionString,
                 "--log-level", "warning"])
            var sawProgress = false
            while worker.isRunning, !sawProgress {
                let during = try JSONValue.parse(try await Self.cli(["import", "status", id, "--json"], db).output)
                let done = Self.int(during["jobs"]?["succeeded"]) + Self.int(during["jobs"]?["failed"])
                guard case .number(let pace)? = during["jobs_per_second"] else { continue }
                sawProgress = done > 0 && done < rows && pace.doubleValue > 0
            }
            #expect(sawProgress, "a status read while the import was half done")
            #expect(await worker.wait(timeout: .seconds(120)) == 0, "\(worker.outputText)")

            let after = try await Self.cli(["import", "status", id], db)
            #expect(after.output.contains("succeeded   \(rows - 4)") && after.output.contains("failed      4"), "\(after.output)")
            #expect(after.output.contains("invalid_fields                 4"))
            #expect(after.output.contains("failing lines: 18, 501, 1235, 3000"), "the file's own lines (the header is line 1)")
            #expect(after.output.contains("done"))

            // The failed rows in the file's columns, with the reasons.
            let failures = try await Self.cli(["import", "failures", id, "-o", files.path("failed.csv")], db)
            #expect(failures.status == 0 && failures.output.contains("4 failed row(s)"), "\(failures.output)")
            let failed = try files.read("failed.csv").split(separator: "\n").map(String.init)
            try #require(failed.count == 5, "\(failed)")
            #expect(failed[0] == "channel,channel_phone_number,contact_phone_number,contact_name,stageId,cf.rut,meta_data.source,error_line,error_code,error_message,error_details")
            #expect(failed[1] == "whatsapp,\(org.whatsappNumber),+56 9 7000 0017,\"Persona, 17\",\(org.stage2.uuidString.lowercased()),10000017-7,crm,18,invalid_fields,some fields are invalid,stageId (no such pipeline stage for this client)".replacingOccurrences(of: ",stageId (", with: ",invalid_fields: stageId ("), "\(failed[1])")
            let lines = ["18", "501", "1235", "3000"]
            #expect(failed.dropFirst().map { row in lines.first { row.contains(",crm,\($0),invalid_fields,") } } == lines)

            // The operator moves them to the first stage in a spreadsheet and enqueues the file again.
            let fixed = failed.map {
                $0.replacingOccurrences(of: org.stage2.uuidString.lowercased(), with: org.stage.uuidString.lowercased())
            }.joined(separator: "\n") + "\n"
            let fixedFile = try files.write("fixed.csv", fixed)
            let second = try await Self.cli(["enqueue", fixedFile, "--api-key", org.apiKey, "--idempotent"], db)
            #expect(second.status == 0 && second.output.contains("enqueued 4 job(s)"), "\(second.output)")
            let drained = try await Self.cli(["run", "--drain", "--log-level", "warning"], db)
            #expect(drained.status == 0, "\(drained.output)")
            let secondID = try #require(second.output.split(separator: " ").dropFirst().first.map { String($0.dropLast()) })
            let secondStatus = try JSONValue.parse(try await Self.cli(["import", "status", secondID, "--json"], db).output)
            #expect(secondStatus["jobs"]?["succeeded"] == 4 && secondStatus["jobs"]?["failed"] == 0, "\(secondStatus)")

            // The whole export again: the check now refuses the four rows of the deleted stage,
            // and the others are all there already, so nothing is added.
            let third = try await Self.cli(
                ["enqueue", file, "--api-key", org.apiKey, "--idempotent", "--skip-invalid", "--rejects", files.path("again.csv")], db)
            #expect(third.status == 0, "\(third.output)")
            #expect(third.output.contains("enqueued 0 job(s) into contacts, \(rows - 4) already enqueued before; 4 invalid row(s)"), "\(third.output)")
            #expect(try await Domain.count("SELECT count(*) FROM queue.jobs WHERE state = 'succeeded' AND import_id IS NOT NULL", on: c) == rows)
            #expect(try await Domain.count("SELECT count(*) FROM crm.contacts WHERE client_id = \(org.client)", on: c) == rows)
            #expect(try await Domain.count("SELECT count(*) FROM crm.customers WHERE client_id = \(org.client) AND stage_id = \(org.stage)", on: c) == 4)
        }
    }
}
