import ReplicationFeature
import Testing

/// The conflict model as pure logic (issue 13): HLC ordering and last-writer-wins registers, table-driven.
@Suite struct ConflictOrderingTests {
    func hlc(_ ms: Int64, _ logical: UInt32 = 0) -> HLCStamp { HLCStamp(milliseconds: ms, logical: logical) }
    func stamp(_ ms: Int64, _ logical: UInt32 = 0, _ region: String) -> WriteStamp { WriteStamp(hlc: hlc(ms, logical), region: region) }

    // MARK: hybrid logical clock

    struct TickCase: Sendable, CustomTestStringConvertible {
        let name: String, last: HLCStamp, physical: Int64, expected: HLCStamp
        var testDescription: String { name }
    }

    @Test(arguments: [
        TickCase(name: "wall clock ahead: its time, counter reset", last: HLCStamp(milliseconds: 100, logical: 7), physical: 150,
                 expected: HLCStamp(milliseconds: 150, logical: 0)),
        TickCase(name: "same millisecond: counter up", last: HLCStamp(milliseconds: 100, logical: 7), physical: 100,
                 expected: HLCStamp(milliseconds: 100, logical: 8)),
        TickCase(name: "wall clock moved back: never goes back", last: HLCStamp(milliseconds: 100, logical: 0), physical: 40,
                 expected: HLCStamp(milliseconds: 100, logical: 1)),
        TickCase(name: "first tick", last: .zero, physical: 1, expected: HLCStamp(milliseconds: 1, logical: 0)),
    ])
    func tick(_ c: TickCase) throws {
        var clock = HybridLogicalClock(last: c.last)
        let next = try clock.tick(physical: c.physical)
        #expect(next == c.expected && clock.last == c.expected && next > c.last)
    }

    struct ReceiveCase: Sendable, CustomTestStringConvertible {
        let name: String, last: HLCStamp, remote: HLCStamp, physical: Int64, expected: HLCStamp
        var testDescription: String { name }
    }

    @Test(arguments: [
        ReceiveCase(name: "wall clock ahead of both", last: HLCStamp(milliseconds: 100, logical: 3), remote: HLCStamp(milliseconds: 120, logical: 9),
                    physical: 200, expected: HLCStamp(milliseconds: 200, logical: 0)),
        ReceiveCase(name: "remote ahead: its time, its counter + 1", last: HLCStamp(milliseconds: 100, logical: 3),
                    remote: HLCStamp(milliseconds: 150, logical: 9), physical: 120, expected: HLCStamp(milliseconds: 150, logical: 10)),
        ReceiveCase(name: "local ahead: local counter + 1", last: HLCStamp(milliseconds: 150, logical: 3),
                    remote: HLCStamp(milliseconds: 100, logical: 9), physical: 120, expected: HLCStamp(milliseconds: 150, logical: 4)),
        ReceiveCase(name: "same millisecond: the greater counter + 1", last: HLCStamp(milliseconds: 150, logical: 3),
                    remote: HLCStamp(milliseconds: 150, logical: 9), physical: 120, expected: HLCStamp(milliseconds: 150, logical: 10)),
        ReceiveCase(name: "remote within the allowed drift", last: .zero, remote: HLCStamp(milliseconds: 400_000, logical: 0),
                    physical: 100_001, expected: HLCStamp(milliseconds: 400_000, logical: 1)),
    ])
    func receive(_ c: ReceiveCase) throws {
        var clock = HybridLogicalClock(last: c.last)
        let next = try clock.receive(c.remote, physical: c.physical)
        #expect(next == c.expected && next > c.remote && next > c.last)
    }

    @Test func refusesAPeerTooFarAheadAndAnExhaustedCounter() throws {
        var clock = HybridLogicalClock(last: hlc(1000, 2))
        #expect(throws: ClockRefusal.tooFarAhead(remote: hlc(400_001), physicalMilliseconds: 100_000)) {
            try clock.receive(hlc(400_001), physical: 100_000)
        }
        #expect(clock.last == hlc(1000, 2))   // unchanged by a refused stamp
        var full = HybridLogicalClock(last: hlc(5, .max))
        #expect(throws: ClockRefusal.logicalOverflow) { try full.tick(physical: 5) }
        #expect(throws: ClockRefusal.logicalOverflow) { try full.receive(hlc(5, 1), physical: 5) }
        let next = try full.tick(physical: 6)
        #expect(next == hlc(6))   // the next millisecond starts over
    }

    @Test func stampsFollowEveryStampTheyHaveSeen() throws {
        // two regions exchanging stamps with skewed clocks: each stamp is after everything its
        // region stamped or received before (causality), whatever the wall clocks say
        var a = HybridLogicalClock(), b = HybridLogicalClock()
        var seenByB: [HLCStamp] = []
        var previous = HLCStamp.zero
        for step in 0..<200 {
            let sent = try a.tick(physical: Int64(1_000 + step / 3))        // a's clock is slow
            let got = try b.receive(sent, physical: Int64(900 + step / 7))  // b's is slower still
            #expect(got > sent && got > previous)
            previous = got
            seenByB.append(got)
            if step % 5 == 0 { _ = try a.receive(try b.tick(physical: 900), physical: Int64(1_000 + step / 3)) }
        }
        #expect(seenByB == seenByB.sorted() && Set(seenByB).count == seenByB.count)
    }

    @Test(arguments: [
        ("12.3", HLCStamp(milliseconds: 12, logical: 3)), ("0.0", HLCStamp.zero),
        ("9223372036854775807.4294967295", HLCStamp(milliseconds: .max, logical: .max)),
        ("", nil), ("12", nil), ("12.", nil), (".3", nil), ("-1.0", nil), ("+1.0", nil), ("1.2.3", nil), (" 1.2", nil),
        ("1.4294967296", nil), ("9223372036854775808.0", nil), ("１.２", nil),
    ] as [(String, HLCStamp?)])
    func parsing(_ text: String, _ expected: HLCStamp?) {
        #expect(HLCStamp(text) == expected)
        if let expected { #expect(expected.description == text) }
    }

    @Test(arguments: [
        // (a, b, a < b)
        (WriteStamp(hlc: HLCStamp(milliseconds: 1, logical: 0), region: "z"), WriteStamp(hlc: HLCStamp(milliseconds: 2, logical: 0), region: "a"), true),
        (WriteStamp(hlc: HLCStamp(milliseconds: 2, logical: 0), region: "a"), WriteStamp(hlc: HLCStamp(milliseconds: 2, logical: 1), region: "a"), true),
        (WriteStamp(hlc: HLCStamp(milliseconds: 2, logical: 1), region: "eastus"), WriteStamp(hlc: HLCStamp(milliseconds: 2, logical: 1), region: "westeu"), true),
        (WriteStamp(hlc: HLCStamp(milliseconds: 2, logical: 1), region: "westeu"), WriteStamp(hlc: HLCStamp(milliseconds: 2, logical: 1), region: "eastus"), false),
        (WriteStamp(hlc: HLCStamp(milliseconds: 2, logical: 1), region: "a"), WriteStamp(hlc: HLCStamp(milliseconds: 2, logical: 1), region: "a"), false),
        // byte-wise, not locale order: "B" (0x42) sorts before "a" (0x61)
        (WriteStamp(hlc: HLCStamp(milliseconds: 2, logical: 1), region: "B"), WriteStamp(hlc: HLCStamp(milliseconds: 2, logical: 1), region: "a"), true),
    ])
    func writeOrder(_ a: WriteStamp, _ b: WriteStamp, _ less: Bool) {
        #expect((a < b) == less)
        if a != b { #expect((b < a) == !less) }
    }

    // MARK: last-writer-wins registers

    struct MergeCase: Sendable, CustomTestStringConvertible {
        let name: String
        let current: RegisterWrite?
        let incoming: RegisterWrite
        let effect: MergeOutcome.Effect
        let winner: RegisterWrite
        let loser: RegisterWrite?
        var testDescription: String { name }
    }

    static let a1 = RegisterWrite(value: .digest("sha256:aaa"), stamp: WriteStamp(hlc: HLCStamp(milliseconds: 10, logical: 0), region: "east"))
    static let b2 = RegisterWrite(value: .digest("sha256:bbb"), stamp: WriteStamp(hlc: HLCStamp(milliseconds: 20, logical: 0), region: "west"))
    static let b2after = RegisterWrite(value: .digest("sha256:bbb"), stamp: WriteStamp(hlc: HLCStamp(milliseconds: 20, logical: 0), region: "west"),
                                       replaces: WriteStamp(hlc: HLCStamp(milliseconds: 10, logical: 0), region: "east"))
    static let tomb3 = RegisterWrite(value: .tombstone, stamp: WriteStamp(hlc: HLCStamp(milliseconds: 30, logical: 0), region: "east"))
    static let c2east = RegisterWrite(value: .digest("sha256:ccc"), stamp: WriteStamp(hlc: HLCStamp(milliseconds: 20, logical: 0), region: "east"))

    @Test(arguments: [
        MergeCase(name: "first write is applied", current: nil, incoming: a1, effect: .applied, winner: a1, loser: nil),
        MergeCase(name: "a successor replaces without a conflict", current: a1, incoming: b2after, effect: .applied, winner: b2after, loser: nil),
        MergeCase(name: "a concurrent newer write wins; the older is the loser", current: a1, incoming: b2, effect: .applied, winner: b2, loser: a1),
        MergeCase(name: "a concurrent older write arriving late loses", current: b2, incoming: a1, effect: .discarded, winner: b2, loser: a1),
        MergeCase(name: "a late copy of a superseded write is dropped quietly", current: b2after, incoming: a1, effect: .discarded,
                  winner: b2after, loser: nil),
        MergeCase(name: "the same write twice changes nothing", current: b2, incoming: b2, effect: .duplicate, winner: b2, loser: nil),
        // the same write relayed by a third region names that region's predecessor: still the same write
        MergeCase(name: "the same write by another path changes nothing", current: b2, incoming: b2after, effect: .duplicate,
                  winner: b2, loser: nil),
        MergeCase(name: "the same write by another path, the other way round", current: b2after, incoming: b2, effect: .duplicate,
                  winner: b2after, loser: nil),
        MergeCase(name: "a later deletion (tombstone) wins over a tag", current: b2, incoming: tomb3, effect: .applied, winner: tomb3, loser: b2),
        MergeCase(name: "a tag move stamped before a deletion loses to it", current: tomb3, incoming: b2, effect: .discarded, winner: tomb3, loser: b2),
        MergeCase(name: "same instant in two regions: the region name decides", current: b2, incoming: c2east, effect: .discarded,
                  winner: b2, loser: c2east),
    ])
    func merge(_ c: MergeCase) {
        var register = LWWRegister(current: c.current)
        let outcome = register.merge(c.incoming)
        #expect(outcome.effect == c.effect)
        #expect(register.current == c.winner)
        #expect(outcome.conflictLoser == c.loser)
    }

    @Test func everyArrivalOrderConvergesOnTheGreatestWrite() {
        let writes = [Self.a1, Self.b2, Self.tomb3, Self.c2east,
                      RegisterWrite(value: .digest("sha256:ddd"), stamp: WriteStamp(hlc: HLCStamp(milliseconds: 30, logical: 0), region: "west"))]
        let greatest = writes.max { $0.stamp < $1.stamp }!
        var finals: Set<RegisterWrite?> = []
        for order in permutations(writes) {
            var register = LWWRegister()
            var losers: [RegisterWrite] = []
            for w in order + order {   // every write delivered twice (at least once)
                if let loser = register.merge(w).conflictLoser { losers.append(loser) }
            }
            finals.insert(register.current)
            // nothing is lost silently: every write but the winner is reported as a loser (a write
            // delivered again may be reported again: the conflict log keys losers by their stamp)
            #expect(Set(losers) == Set(writes).subtracting([greatest]))
        }
        #expect(finals == [greatest])
    }

    @Test func equalStampsWithDifferentValuesStillConverge() {
        let s = WriteStamp(hlc: HLCStamp(milliseconds: 5, logical: 0), region: "east")
        let x = RegisterWrite(value: .digest("sha256:xxx"), stamp: s)
        let tomb = RegisterWrite(value: .tombstone, stamp: s)
        var one = LWWRegister(), two = LWWRegister()
        _ = one.merge(x); _ = one.merge(tomb)
        _ = two.merge(tomb); _ = two.merge(x)
        #expect(one == two && one.current == x)
    }

    func permutations<T>(_ items: [T]) -> [[T]] {
        guard items.count > 1 else { return [items] }
        var out: [[T]] = []
        for (i, item) in items.enumerated() {
            var rest = items
            rest.remove(at: i)
            for p in permutations(rest) { out.append([item] + p) }
        }
        return out
    }
}
