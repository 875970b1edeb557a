#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import JSON
import TextForms
import JobQueue
import Logging
import Postgres

/// The `contact.upsert` job: create or find a contact, and update its customer
/// (docs/rules.md, rule by rule).
///
/// The worker hands it every `contact.upsert` job of a batch at once
/// (``handleBatch(_:on:logger:)``): each job is checked on its own, then the batch is looked
/// up with one statement and written with one more. Every ``ContactError`` is found before
/// anything is written, so it fails its job (400/401, never retried) with nothing written and
/// no other job touched. A lost race with another worker (a unique violation on the identity
/// or identifier indexes) fails the set's statement; the worker then runs the same jobs one
/// by one in savepoints, and a job that lost is re-run at once and finds the winner's rows.
public struct ContactUpsertHandler: JobHandler {
    public let kind = "contact.upsert"
    let structurer: any MetadataStructurer
    let cache = ContactCache()

    public init(structurer: any MetadataStructurer = RuleBasedStructurer()) {
        self.structurer = structurer
    }

    /// A job read once: what the rules without a database made of its payload, and the lock
    /// of its person in the organization it was enqueued for.
    public struct Work: Sendable {
        var draft: ContactRequest.Draft
        var lockKey: String?
    }

    /// Applies every rule that needs no database (``ContactRequest/check(_:)``); the problems
    /// found are reported with those that need the database, so this never throws.
    public func decode(_ job: Job) -> Work {
        let draft = ContactRequest.check(job.payload)
        return Work(draft: draft, lockKey: draft.person?.key(organization: job.fairnessKey))
    }

    /// The lock a job takes (the worker takes them for a whole batch up front, in one order):
    /// its person's (``Person/key(organization:)``), so that the same person writing to two of
    /// the organization's numbers resolves to one customer while the same number in another
    /// organization, a different customer, never waits for it. (Identifier values are not
    /// locked: which fields are identifiers depends on the organization, and the unique index
    /// settles their races.)
    public func lockKeys(for work: Work) -> [String] {
        work.lockKey.map { [$0] } ?? []
    }

    /// Refreshes the settings cache when an organization's settings changed.
    public func prepareBatch(_ jobs: [DecodedJob<Work>], on connection: isolated PostgresConnection) async throws {
        cache.observe(version: try ContactStore.configVersion(on: connection))
    }

    public func handle(_ job: DecodedJob<Work>, on connection: isolated PostgresConnection, logger: Logger)
        async throws -> JSONValue
    {
        try await handleBatch([job], on: connection, logger: logger)[0].get()
    }

    /// Runs many jobs set-based: each is checked and prepared on its own (settings come from
    /// the cache), then rounds of jobs that do not depend on each other share one lookup
    /// statement and one write statement. Jobs that do depend on each other (one person, one
    /// identifier value, one customer) go to later rounds, in batch order, and see what the
    /// earlier ones wrote; later jobs of a round job's own contact ride along in its round,
    /// planned in memory on top of it (see ``UpsertPlanning/nextRound(_:keys:chains:)``).
    public func handleBatch(_ jobs: [DecodedJob<Work>], on connection: isolated PostgresConnection, logger: Logger)
        async throws -> [Result<JSONValue, any Error>]
    {
        var results = [Result<JSONValue, any Error>?](repeating: nil, count: jobs.count)
        // A prepared job, its place in the batch and its dependency keys.
        typealias Pending = (index: Int, job: PreparedUpsert, keys: [String])
        var pending: [Pending] = []
        pending.reserveCapacity(jobs.count)
        for (index, job) in jobs.enumerated() {
            do {
                let prepared = try await prepare(job, on: connection)
                pending.append((index, prepared, prepared.dependencyKeys))
            } catch let error where error is PostgresError || error is LostRace {
                throw error
            } catch {
                results[index] = .failure(error)
            }
        }
        while !pending.isEmpty {
            let (round, rest) = UpsertPlanning.nextRound(pending, keys: \.keys) { head, item in
                item.job.continues(head.job)
            }
            let found = try ContactStore.lookup(round.map(\.head.job.lookupRequest), on: connection)
            // Two jobs of a round that meet at one customer (two identities of one person): the
            // round ends before the later one, which waits for the next round to see the
            // earlier one's write.
            var touched = Set<UUID>()
            var cutoff = Int.max
            for (chain, lookup) in zip(round, found) {
                let customers = lookup.customerIDs
                if !customers.isDisjoint(with: touched) {
                    cutoff = chain.head.index
                    break
                }
                touched.formUnion(customers)
            }
            var deferred: [Pending] = []
            var writes: [WritePlan] = []
            var planned: [(index: Int, plan: WritePlan)] = []
            for (chain, lookup) in zip(round, found) {
                guard chain.head.index < cutoff else {
                    deferred += [chain.head] + chain.followers
                    continue
                }
                deferred += chain.followers.filter { $0.index >= cutoff }
                // The head is planned on what the store found; each follower on what the plans
                // before it left, as if they had been written.
                var state = UpsertPlanning.ChainState(found: lookup, head: chain.head.job)
                var plans: [WritePlan] = []
                for item in [chain.head] + chain.followers.filter({ $0.index < cutoff }) {
                    do {
                        let plan = try UpsertPlanning.plan(item.job, found: state.lookup(for: item.job))
                        state.apply(plan)
                        plans.append(plan)
                        planned.append((item.index, plan))
                    } catch is UpsertPlanning.Vanished {
                        throw LostRace("the customer of a contact was deleted between its lookup and its lock")
                    } catch {
                        results[item.index] = .failure(error)
                    }
                }
                if let write = UpsertPlanning.merge(plans, found: lookup) { writes.append(write) }
            }
            let createdAt = try ContactStore.write(writes, on: connection)
            for (index, plan) in planned {
                guard let date = plan.contact.createdAt ?? createdAt[plan.contact.id] else {
                    throw UpsertInvariant.contactNotWritten
                }
                results[index] = .success(UpsertPlanning.result(plan, createdAt: date))
            }
            pending = (deferred + rest).sorted { $0.index < $1.index }
        }
        return results.map { $0 ?? .failure(UpsertInvariant.jobWithoutResult) }
    }

    /// Checks one payload as the worker will before it writes anything: the payload rules, the
    /// organization, the channel, and the stage, agent and custom fields against the
    /// organization's settings (docs/rules.md sections 1 to 3). The organization the job would
    /// act for when it gets past them; otherwise every problem found. What needs the person's rows (identifier
    /// conflicts) is left to the worker. Settings are cached for the handler's life.
    public func check(_ payload: JSONValue, clientID: UUID?, on connection: isolated PostgresConnection) async throws
        -> Result<UUID, ContactError>
    {
        let job = Job(id: 0, queue: "", kind: kind, payload: payload, clientID: clientID)
        do {
            return .success(try await prepare(DecodedJob(job: job, work: decode(job)), on: connection).channel.clientID)
        } catch let error as ContactError {
            return .failure(error)
        }
    }

    /// Every rule that needs no lookup of the person: the payload, the client, the channel,
    /// stage, agent and custom fields against the client's settings, and the structurer.
    /// Throws the job's ``ContactError`` with every problem found, or a database error.
    func prepare(_ decoded: DecodedJob<Work>, on connection: isolated PostgresConnection) async throws
        -> PreparedUpsert
    {
        // 1. The rules without a database, applied once when the job was decoded.
        let job = decoded.job
        let draft = decoded.work.draft
        var errors = draft.errors
        guard let platform = draft.platform, let reference = draft.channel else { throw errors }

        // 2. The client and the channel.
        if let clientID = job.clientID {
            let active = try cache.clientActive(clientID) { () throws(PostgresError) in
                try ContactStore.clientIsActive(clientID, on: connection)
            }
            guard active == true else {
                errors.unauthorized = "the job's client does not exist or is inactive"
                throw errors
            }
        }
        let client = job.clientID.map(UUIDText.string) ?? ""
        let channelKey: String
        switch reference {
        case .id(let id): channelKey = platform.rawValue + "|id|" + UUIDText.string(id) + "|" + client
        case .phone(let phone): channelKey = platform.rawValue + "|phone|" + phone.matchKey + "|" + client
        }
        let channels = try cache.channels(channelKey) { () throws(PostgresError) in
            try ContactStore.channels(reference, platform: platform, clientID: job.clientID, on: connection)
        }
        guard channels.count == 1, let channel = channels.first else {
            errors.unknownChannel =
                channels.isEmpty
                ? "no active \(platform.rawValue) channel with that identity"
                : "several active \(platform.rawValue) channels match; name the channel by its UUID"
            throw errors
        }
        guard channel.clientActive else {
            errors.unauthorized = "the channel's client is inactive"
            throw errors
        }
        let clientID = channel.clientID

        // 3. Stage, agent and custom fields, against the client's own settings.
        let settings = try cache.settings(clientID) { () throws(PostgresError) in
            try ContactStore.clientSettings(clientID, on: connection)
        }
        if let stage = draft.stageID, !settings.stages.contains(stage) {
            errors.invalidFields.append(.init("stageId", "no such pipeline stage for this client"))
        }
        if let agent = draft.agentID, !settings.activeAgents.contains(agent) {
            errors.invalidFields.append(.init("agentId", "no such active team member for this client"))
        }
        var changes: [String: FieldChange] = [:]
        for (key, input) in draft.customFieldValues {
            guard let definition = settings.definitions[key] else {
                errors.invalidCustomFieldKeys.append(key)
                continue
            }
            if input.isEmptyString {
                changes[key] = .init(definition: definition, value: nil)
                continue
            }
            switch definition.canonicalize(input) {
            case .success(let canonical): changes[key] = .init(definition: definition, value: canonical)
            case .failure(let problem): errors.invalidCustomFieldValues.append(.init(key, problem.description))
            }
        }
        guard errors.isEmpty, let request = draft.request else { throw errors }

        // 4. The metadata structurer; explicit custom field values win over derived ones.
        // A derived value that loses (or that its definition refuses) goes back into the metadata.
        var structured = try await structurer.structure(request.metaData ?? [:], definitions: settings.definitions)
        for (key, input) in structured.customFieldValues {
            if changes[key] == nil, let definition = settings.definitions[key],
                case .success(let canonical) = definition.canonicalize(input)
            {
                changes[key] = .init(definition: definition, value: canonical)
            } else if let origin = structured.fieldOrigins[key] {
                structured.metaData[origin.key] = origin.value
            }
        }
        return PreparedUpsert(
            request: request, channel: channel,
            fieldChanges: changes.values.sorted { $0.definition.key < $1.definition.key }, structured: structured)
    }
}

extension NewJob {
    /// A new job; one of kind `contact.upsert` carries its default ordering key, the one the
    /// insert trigger would compute (``ContactRequest/orderingKey(_:)``), so that a bulk COPY
    /// leaves the trigger nothing to do per row.
    public static func withDefaultOrderingKey(
        queue: String, kind: String, payload: JSONValue, clientID: UUID? = nil, priority: Int16 = 0
    ) -> NewJob {
        var job = NewJob(queue: queue, kind: kind, payload: payload, clientID: clientID, priority: priority)
        ContactJobs.completeOrderingKey(&job)
        return job
    }
}

/// Builds the jobs of a bulk enqueue with every key the table's triggers would compute, so
/// that a COPY of a million rows leaves them nothing to do per row.
///
/// ```swift
/// let jobs = try ContactJobs.newJobs(payloads, queue: "contacts", on: connection)
/// try JobProducer.enqueueMany(jobs, completing: ContactJobs.completeOrderingKey, on: connection)
/// ```
public enum ContactJobs {
    /// `contact.upsert` jobs (or jobs of `kind`) for `payloads`, each with its fairness key:
    /// `clientID` when given, else the organization of the channel the payload names, resolved
    /// with one query for all the distinct channels of the input (through
    /// `crm.payload_channel_client`, which a producer may call).
    ///
    /// Their ordering keys are left to ``completeOrderingKey(_:)``, which `enqueueMany` runs on
    /// each job as it streams it: computed there, they cost no time before the COPY starts
    /// (about 2.5 µs a job, a seventh of a bulk enqueue when computed here first). A job sent
    /// without one gets it from the table's insert trigger instead.
    public static func newJobs(
        _ payloads: [JSONValue], queue: String, kind: String = "contact.upsert", clientID: UUID? = nil,
        priority: Int16 = 0, on connection: isolated PostgresConnection
    ) throws(PostgresError) -> [NewJob] {
        var jobs = payloads.map {
            NewJob(queue: queue, kind: kind, payload: $0, clientID: clientID, priority: priority)
        }
        guard clientID == nil, kind == "contact.upsert" else { return jobs }
        // One probe per distinct channel reference, not per row.
        var references: [String: JSONValue] = [:]
        var keys: [String?] = []
        for payload in payloads {
            let reference = channelReference(payload)
            keys.append(reference?.key)
            if let reference, references[reference.key] == nil { references[reference.key] = reference.probe }
        }
        let ordered = Array(references)
        guard !ordered.isEmpty else { return jobs }
        let rows = try connection.query(
            """
            SELECT crm.payload_channel_client(p) AS client FROM jsonb_array_elements(\(JSONValue.array(ordered.map(\.value)))::jsonb) WITH ORDINALITY AS x(p, n)
            ORDER BY n
            """)
        var clients: [String: String] = [:]
        for (entry, row) in zip(ordered, rows) {
            if let client = try row.decode(UUID?.self, "client") { clients[entry.key] = UUIDText.string(client) }
        }
        for index in jobs.indices {
            jobs[index].fairnessKey = keys[index].flatMap { clients[$0] }
        }
        return jobs
    }

    /// Gives a `contact.upsert` job without an ordering key its default one (the key the insert
    /// trigger would compute, ``ContactRequest/orderingKey(_:)``); other jobs are left as they are.
    public static func completeOrderingKey(_ job: inout NewJob) {
        guard job.orderingKey == nil, job.kind == "contact.upsert" else { return }
        job.orderingKey = ContactRequest.orderingKey(job.payload)
    }

    /// The channel a payload names, as a key and as the smallest payload that names it.
    static func channelReference(_ payload: JSONValue) -> (key: String, probe: JSONValue)? {
        guard case .object(let object) = payload, case .string(let channel)? = object["channel"] else { return nil }
        let field = channel == "webchat" ? "channel_id" : "channel_phone_number"
        guard case .string(let reference)? = object[field] else { return nil }
        return (channel + "|" + reference, .object(["channel": .string(channel), field: .string(reference)]))
    }
}
