import Logging
import SDQMessages
import SDQPlatform
import ServiceLifecycle

/// Fair share at dispatch (``FairShareSettings``): each lane is kept short and the dispatcher
/// holds the rest, one line per tenant, feeding every lane round-robin across the tenants that
/// wait.
///
/// Three loops share a ``DispatchHold``:
/// - **receive**: takes dispatch-queue messages while fewer than `hold` tasks are held, with a
///   visibility of ``holdLease``; a task that cannot be dispatched (deadline passed, no pool)
///   is failed at once, every other one is held on its lane;
/// - **feed**: on each new arrival and every ``refillInterval``, gives each lane with tasks
///   waiting as many as it has room for (`lane_depth` less its visible depth, from the backlog
///   sampler's figures plus what was sent since, read again from the queue only when that says
///   full), in fair-share order, routed as a ``SendRound`` and deleted together;
/// - **lease**: renews held messages' visibility (``holdLease``) before it lapses.
///
/// A held message is deleted only once its task is on a lane; a dispatcher that stops hands what
/// it holds back to the queue at once (visibility 0), and one that dies loses nothing (the
/// leases lapse). A message received again after its lease lapsed replaces the receipt of the
/// held one instead of being held twice.
extension Dispatcher {
    func runFairShare(_ settings: FairShareSettings) async {
        let queue = context.transport.queue(named: context.names.dispatchQueue)
        let consumer = QueueConsumer(queue: queue, logger: logger, wait: receiveWait)
        let hold = DispatchHold()
        let (wakeups, bell) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await self.receiveAndHold(consumer, into: hold, settings: settings, bell: bell)
                bell.finish()
            }
            group.addTask {
                for await _ in wakeups { await self.feed(hold, settings: settings, consumer: consumer) }
            }
            // The two timed loops end at once on graceful shutdown (a sleep would hold the stop).
            group.addTask {
                // Full lanes are looked at again every refill interval.
                await cancelWhenGracefulShutdown {
                    while !Task.isCancelled, !Task.isShuttingDownGracefully {
                        do { try await Task.sleep(for: self.refillInterval) } catch { return }
                        bell.yield()
                        for (lane, tenants) in hold.waiting {
                            SDQMetrics.held(pool: lane.pool, lane: lane.high ? "high" : "normal", count: tenants.values.reduce(0, +))
                        }
                    }
                }
            }
            group.addTask {
                await cancelWhenGracefulShutdown {
                    while !Task.isCancelled, !Task.isShuttingDownGracefully {
                        do { try await Task.sleep(for: min(.seconds(15), self.holdLease / 4)) } catch { return }
                        await self.renewLeases(hold, on: queue)
                    }
                }
            }
        }
        // Stopped: what is still held goes back to the queue at once, for the next dispatcher.
        let left = hold.removeAll()
        if !left.isEmpty {
            logger.info("returning held tasks to the dispatch queue", metadata: ["count": "\(left.count)"])
            await forEach(left.map(\.message.receiptHandle)) { try? await queue.changeVisibility(receiptHandle: $0, timeout: .zero) }
        }
    }

    /// Receives while the hold has room; holds what can be dispatched, settles the rest now.
    private func receiveAndHold(
        _ consumer: QueueConsumer, into hold: DispatchHold, settings: FairShareSettings, bell: AsyncStream<Void>.Continuation
    ) async {
        var backoff = Duration.milliseconds(100)
        while !Task.isCancelled, !Task.isShuttingDownGracefully {
            let room = settings.hold - hold.count
            guard room > 0 else {
                do { try await Task.sleep(for: refillInterval) } catch { return }
                continue
            }
            let messages: [QueueMessage]
            do {
                messages = try await consumer.queue.receive(maxMessages: min(10, room), wait: receiveWait, visibilityTimeout: holdLease)
                backoff = .milliseconds(100)
            } catch {
                if Task.isCancelled || Task.isShuttingDownGracefully { return }
                logger.warning("receive failed", metadata: ["queue": "\(consumer.queue.name)", "error": "\(error)"])
                do { try await Task.sleep(for: backoff) } catch { return }
                backoff = min(backoff * 2, .seconds(10))
                continue
            }
            let leaseEnd = ContinuousClock.now + holdLease
            var now: [QueueMessage] = [], duplicates: [String] = []
            for message in messages {
                // Undecodable, past its deadline or unroutable: `route` rejects or fails it.
                guard let task = try? MessageCodec.decode(Sdq_V1_GenerationTask.self, body: message.body, attributes: message.attributes),
                    case .success(let pool) = await choosePool(for: task, now: EpochClock.nowMillis())
                else {
                    now.append(message)
                    continue
                }
                let held = HeldTask(message: message, task: task, pool: pool)
                let lane = LaneKey(pool: pool.name, high: task.priority == .high)
                if hold.hold(held, lane: lane, tenant: task.tenant, visibleAt: leaseEnd) == .duplicateTask { duplicates.append(message.receiptHandle) }
            }
            if !duplicates.isEmpty { try? await consumer.queue.delete(receiptHandles: duplicates) }
            bell.yield()
            if !now.isEmpty {
                let outcomes = await withTaskGroup(of: (QueueMessage, MessageDisposition).self) { group in
                    for message in now { group.addTask { (message, await self.route(message)) } }
                    return await group.reduce(into: []) { $0.append($1) }
                }
                await settle(outcomes, consumer)
            }
        }
    }

    /// Gives every lane with tasks waiting what it has room for, in fair-share order.
    private func feed(_ hold: DispatchHold, settings: FairShareSettings, consumer: QueueConsumer) async {
        await withTaskGroup(of: Void.self) { group in
            for lane in hold.waitingLanes {
                group.addTask {
                    while true {
                        let room = await self.laneRoom(lane, limit: settings.laneDepth)
                        let batch = hold.take(lane, upTo: min(room, 10))
                        guard !batch.isEmpty else { return }
                        let round = SendRound(participants: batch.count)
                        let outcomes = await withTaskGroup(of: (QueueMessage, MessageDisposition).self) { routes in
                            for (participant, held) in batch.enumerated() {
                                routes.addTask {
                                    let disposition = await self.route(held.message, round: round, participant: participant, chosen: held.pool)
                                    await round.leave(participant: participant)
                                    return (held.message, disposition)
                                }
                            }
                            return await routes.reduce(into: []) { $0.append($1) }
                        }
                        await self.settle(outcomes, consumer)
                    }
                }
            }
        }
    }

    /// How many more tasks `lane` takes now: its target less its visible depth. The target is
    /// `lane_depth`, or the lane's in-flight count (what its busy workers hold) when that is
    /// larger: a lane stays about one round of the fleet deep, so the autoscalers, which count
    /// the lane's visible and in-flight messages, still see twice the fleet's work while tasks
    /// are held and grow the pool step by step. The depth is an estimate (the last sample plus
    /// the sends since; it only errs high) while it shows room; when it shows the lane full, the
    /// queue is asked again, at most once per ``refillInterval``.
    func laneRoom(_ lane: LaneKey, limit: Int) async -> Int {
        let lanes = context.workerQueue(pool: lane.pool)
        let queue = lane.high ? lanes.high : lanes.normal
        if let estimate = depths.estimate(queue.name, maxAge: backlogInterval * 2) {
            let target = max(limit, depths.inFlight(queue.name))
            if estimate < target { return target - estimate }
        }
        if let age = depths.age(queue.name), age < refillInterval { return 0 }
        guard let depth = try? await queue.depth() else { return 0 }
        depths.record(queue.name, visible: depth.visible, inFlight: depth.inFlight)
        return max(0, max(limit, depth.inFlight) - depth.visible)
    }

    /// Renews the leases of held messages that lapse within half of ``holdLease``.
    private func renewLeases(_ hold: DispatchHold, on queue: any MessageQueue) async {
        let now = ContinuousClock.now
        let receipts = hold.renewing(lapsingBefore: now + holdLease / 2, until: now + holdLease)
        await forEach(receipts) { receipt in
            do { try await queue.changeVisibility(receiptHandle: receipt, timeout: holdLease) } catch {
                // Taken meanwhile, or the lease lapsed: the message comes back and is held again.
                self.logger.debug("renewing a held message failed", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Deletes the handled messages together; settles the others one by one.
    private func settle(_ outcomes: [(QueueMessage, MessageDisposition)], _ consumer: QueueConsumer) async {
        let done = outcomes.filter { $0.1 == .delete }.map(\.0.receiptHandle)
        if !done.isEmpty {
            do { try await consumer.queue.delete(receiptHandles: done) } catch {
                // They come back after their visibility timeout: at-least-once, never lost.
                logger.warning("deleting dispatched messages failed", metadata: ["error": "\(error)"])
            }
        }
        for (message, disposition) in outcomes where disposition != .delete { await consumer.settle(message, disposition: disposition) }
    }

    /// Runs `body` for every item, 16 at a time.
    private func forEach(_ items: [String], _ body: @escaping @Sendable (String) async -> Void) async {
        await withTaskGroup(of: Void.self) { group in
            for (index, item) in items.enumerated() {
                if index >= 16 { await group.next() }
                group.addTask { await body(item) }
            }
        }
    }
}
