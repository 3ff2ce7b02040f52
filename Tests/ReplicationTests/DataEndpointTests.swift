import Access
import Crypto
import Foundation
import Testing
@testable import ReplicationFeature

/// Issue 13 items 4-5 as pure logic: client networks, signed data-endpoint URLs, peer health.
@Suite struct DataEndpointTests {
    func ip(_ s: String) -> IPAddress { IPAddress(s)! }

    @Test func theKeysOfPeriodsMoreThanTwoBackAreRetiredOnlyWhenARecentOneIsStored() {
        let p = DataRouting.keyNamePrefix
        let names = [p + "7", p + "8", p + "9", p + "10", p + "x", p + "08", p + "-3", "other-7", p]
        #expect(DataRouting.retiredKeys(names, period: 10) == [p + "7", p + "-3"])
        #expect(DataRouting.retiredKeys(names, period: 11) == [p + "7", p + "8", p + "-3"])
        #expect(DataRouting.retiredKeys(names, period: 12) == [p + "7", p + "8", p + "9", p + "-3"])
        // no key of the two periods before: this node's clock may be ahead, nothing goes
        #expect(DataRouting.retiredKeys(names, period: 13) == [])
        #expect(DataRouting.retiredKeys([], period: 9) == [])
    }

    @Test func theLongestClientNetworkWins() throws {
        let networks = try ClientNetworks.parse(["10.0.0.0/8=westeurope", "10.20.0.0/16=southeastasia,10.20.30.40=eastus", "fd00::/8=sea"])
        #expect(networks.region(for: ip("10.1.2.3")) == "westeurope")
        #expect(networks.region(for: ip("10.20.1.1")) == "southeastasia")
        #expect(networks.region(for: ip("10.20.30.40")) == "eastus")
        #expect(networks.region(for: ip("fd12::1")) == "sea")
        #expect(networks.region(for: ip("192.0.2.1")) == nil)
        #expect(try ClientNetworks.parse([]).region(for: ip("10.1.2.3")) == nil)
    }

    @Test func aMalformedClientNetworkIsRefusedNamingIt() {
        for bad in ["10.0.0.0/8", "=sea", "10.0.0.0/8=", "10.0.0.0/33=sea", "banana=sea", "10.0.0.0/8=Sea_Asia", "10.0.0.0/8=a,10.0.0.0/8=b"] {
            #expect(throws: ReplicationError.self, "\(bad)") { try ClientNetworks.parse([bad]) }
        }
        do {
            _ = try ClientNetworks.parse(["10.0.0.0/8=a", "300.1.1.1/8=b"])
            Issue.record("accepted")
        } catch {
            #expect(error.text.contains("300.1.1.1/8=b"))
        }
    }

    func query(_ q: String) -> [String: [String]] {
        var out: [String: [String]] = [:]
        for pair in q.split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1).map(String.init)
            out[kv[0], default: []].append(kv.count > 1 ? kv[1] : "")
        }
        return out
    }

    @Test func aDataEndpointIsSchemeHostAndPortOnly() throws {
        #expect(try ReplicationService.normalizeDataEndpoint("https://sea.data.example:8443/") == "https://sea.data.example:8443")
        #expect(try ReplicationService.normalizeDataEndpoint("http://127.0.0.1:5000") == "http://127.0.0.1:5000")
        for bad in ["https://sea.data.example/registry", "https://sea.data.example/v2/", "https://u:p@sea.data.example",
                    "https://sea.data.example?x=1", "ftp://sea.data.example", "sea.data.example"] {
            #expect(throws: ReplicationError.self, "\(bad)") { _ = try ReplicationService.normalizeDataEndpoint(bad) }
        }
        // Nor a peer's endpoint: a registry answers at its root, and a path would be dropped unsaid.
        #expect(throws: ReplicationError.self) { _ = try ReplicationService.normalize(endpoint: "https://sea.example/registry") }
        #expect(try ReplicationService.normalize(endpoint: "https://sea.example:5000/") == "https://sea.example:5000")
    }

    @Test func aSignatureHoldsOnlyForItsMethodRepositoryDigestAndTime() throws {
        let key = Curve25519.Signing.PrivateKey()
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let expires = Int64(now.timeIntervalSince1970) + 120
        let digest = "sha256:" + String(repeating: "a", count: 64)
        let q = try DataEndpointSignature.sign(repository: "geo/app", digest: digest, expires: expires, region: "westeurope", key: key)
        #expect(!q.contains("Bearer") && q.hasPrefix("berth-region=westeurope&berth-key="))
        let signed = try DataEndpointSignature.parse(query(q))
        #expect(signed.region == "westeurope" && signed.expires == expires && signed.keyId == DataEndpointSignature.keyId(key.publicKey))
        try signed.verify(method: "GET", repository: "geo/app", digest: digest, key: key.publicKey, now: now)

        #expect(throws: DataEndpointRefusal.badSignature) {
            try signed.verify(method: "GET", repository: "geo/other", digest: digest, key: key.publicKey, now: now)
        }
        #expect(throws: DataEndpointRefusal.badSignature) {
            try signed.verify(method: "GET", repository: "geo/app", digest: "sha256:" + String(repeating: "b", count: 64),
                              key: key.publicKey, now: now)
        }
        #expect(throws: DataEndpointRefusal.badSignature) {
            try signed.verify(method: "DELETE", repository: "geo/app", digest: digest, key: key.publicKey, now: now)
        }
        var later = signed
        later.expires += 60   // a longer life than was signed
        #expect(throws: DataEndpointRefusal.badSignature) {
            try later.verify(method: "GET", repository: "geo/app", digest: digest, key: key.publicKey, now: now)
        }
        #expect(throws: DataEndpointRefusal.expired) {
            try signed.verify(method: "GET", repository: "geo/app", digest: digest, key: key.publicKey, now: now.addingTimeInterval(121 + 31))
        }
        // Another region's key, or a key id that does not name the key: refused.
        #expect(throws: DataEndpointRefusal.unknownKey) {
            try signed.verify(method: "GET", repository: "geo/app", digest: digest, key: Curve25519.Signing.PrivateKey().publicKey, now: now)
        }
        // A signer cannot mint a URL that lives for hours.
        let long = try DataEndpointSignature.parse(query(try DataEndpointSignature.sign(
            repository: "geo/app", digest: digest, expires: expires + 3600, region: "westeurope", key: key)))
        #expect(throws: DataEndpointRefusal.self) {
            try long.verify(method: "GET", repository: "geo/app", digest: digest, key: key.publicKey, now: now)
        }
    }

    /// Bound to a client: the address is in the signature, never in the URL; the URL holds only
    /// from that address, and adding or removing the binding breaks it.
    @Test func aClientBoundSignatureHoldsOnlyFromItsAddress() throws {
        let key = Curve25519.Signing.PrivateKey()
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let expires = Int64(now.timeIntervalSince1970) + 120
        let digest = "sha256:" + String(repeating: "a", count: 64)
        let q = try DataEndpointSignature.sign(repository: "geo/app", digest: digest, expires: expires, region: "westeurope", key: key,
                                               client: "10.1.2.3")
        #expect(q.contains("&berth-client=1&") && !q.contains("10.1.2.3"))
        let bound = try DataEndpointSignature.parse(query(q))
        #expect(bound.clientBound)
        try bound.verify(method: "GET", repository: "geo/app", digest: digest, key: key.publicKey, now: now, client: "10.1.2.3")
        for other in ["10.1.2.4", "::ffff:10.1.2.3", ""] {
            #expect(throws: DataEndpointRefusal.otherClient) {
                try bound.verify(method: "GET", repository: "geo/app", digest: digest, key: key.publicKey, now: now, client: other)
            }
        }
        #expect(throws: DataEndpointRefusal.otherClient) {   // an address this region cannot tell
            try bound.verify(method: "GET", repository: "geo/app", digest: digest, key: key.publicKey, now: now, client: nil)
        }
        #expect(throws: DataEndpointRefusal.otherClient) {   // still the repository, digest and time it was signed for
            try bound.verify(method: "GET", repository: "geo/other", digest: digest, key: key.publicKey, now: now, client: "10.1.2.3")
        }
        // The binding removed: the unbound payload is not what was signed.
        var stripped = query(q)
        stripped[DataEndpointSignature.clientParameter] = nil
        #expect(throws: DataEndpointRefusal.badSignature) {
            try DataEndpointSignature.parse(stripped).verify(method: "GET", repository: "geo/app", digest: digest, key: key.publicKey,
                                                             now: now, client: "10.1.2.3")
        }
        // A binding added to an unbound URL: not what was signed either.
        var added = query(try DataEndpointSignature.sign(repository: "geo/app", digest: digest, expires: expires, region: "westeurope", key: key))
        added[DataEndpointSignature.clientParameter] = ["1"]
        #expect(throws: DataEndpointRefusal.otherClient) {
            try DataEndpointSignature.parse(added).verify(method: "GET", repository: "geo/app", digest: digest, key: key.publicKey,
                                                          now: now, client: "10.1.2.3")
        }
        // Absent (a query reader that lists no values for it): unbound.
        var empty = query(try DataEndpointSignature.sign(repository: "geo/app", digest: digest, expires: expires, region: "westeurope", key: key))
        empty[DataEndpointSignature.clientParameter] = []
        #expect(try DataEndpointSignature.parse(empty).clientBound == false)
        // Only once, and only as 1.
        for bad in [["0"], ["1", "1"], ["true"], [""]] {
            var q2 = query(q)
            q2[DataEndpointSignature.clientParameter] = bad
            #expect(throws: DataEndpointRefusal.self) { try DataEndpointSignature.parse(q2) }
        }
    }

    @Test func aMalformedSignedQueryIsRefused() throws {
        let key = Curve25519.Signing.PrivateKey()
        let good = query(try DataEndpointSignature.sign(repository: "r", digest: "sha256:" + String(repeating: "c", count: 64),
                                                        expires: 1, region: "west", key: key))
        for drop in [DataEndpointSignature.regionParameter, DataEndpointSignature.keyParameter, DataEndpointSignature.expiresParameter,
                     DataEndpointSignature.signatureParameter] {
            var q = good
            q[drop] = nil
            #expect(throws: DataEndpointRefusal.self) { try DataEndpointSignature.parse(q) }
            q = good
            q[drop]!.append(good[drop]![0])   // repeated
            #expect(throws: DataEndpointRefusal.self) { try DataEndpointSignature.parse(q) }
        }
        var q = good
        q[DataEndpointSignature.signatureParameter] = ["not+base64url"]
        #expect(throws: DataEndpointRefusal.self) { try DataEndpointSignature.parse(q) }
        q = good
        q[DataEndpointSignature.regionParameter] = ["../etc"]
        #expect(throws: DataEndpointRefusal.self) { try DataEndpointSignature.parse(q) }
        q = good
        q[DataEndpointSignature.expiresParameter] = ["soon"]
        #expect(throws: DataEndpointRefusal.self) { try DataEndpointSignature.parse(q) }
    }

    @Test func healthFailsAfterNFailuresAndRecoversAfterMSuccesses() {
        var h = PeerHealth(failuresToFail: 2, successesToRecover: 3)
        let t = Date(timeIntervalSince1970: 1000)
        func rec(_ error: String?, _ second: Double, lag: Int64? = nil) -> Bool {
            h.record(error: error, lagEvents: lag, at: t.addingTimeInterval(second))
        }
        #expect(h.state == .unknown)
        let first = rec(nil, 0, lag: 4)          // first good answer: healthy at once
        #expect(first && h.state == .healthy && h.since == t && h.lagEvents == 4)
        let one = rec("timeout", 1)              // one failure is tolerated
        #expect(!one && h.state == .healthy)
        let reset = rec(nil, 2)                  // a success resets the count
        let again = rec("timeout", 3)
        let two = rec("refused", 4)              // two in a row: unhealthy
        #expect(!reset && !again && two)
        #expect(h.state == .unhealthy && h.lastError == "refused" && h.since == t.addingTimeInterval(4))
        let r5 = rec(nil, 5), r6 = rec(nil, 6)
        let flap = rec("flap", 7)                // a failure restarts the recovery
        let r8 = rec(nil, 8), r9 = rec(nil, 9)
        #expect(!r5 && !r6 && !flap && !r8 && !r9 && h.state == .unhealthy)
        let back = rec(nil, 10)                  // three in a row: healthy
        #expect(back && h.state == .healthy && h.lastError == nil)
        var never = PeerHealth()
        let failed = never.record(error: "refused", at: t)   // never seen and failing: unhealthy
        #expect(failed && never.state == .unhealthy)
    }

    @Test func aHealthCheckThatHangsCountsAsFailedAtItsDeadline() async {
        // An answer that never comes (a peer that accepts and stalls): the deadline's outcome.
        let hung = await PeerHealthService.withDeadline(.milliseconds(50), onTimeout: "timed out") {
            try? await Task.sleep(for: .seconds(3600))
            return Task.isCancelled ? "cancelled late" : "answered"
        }
        #expect(hung == "timed out")
        let quick = await PeerHealthService.withDeadline(.seconds(60), onTimeout: "timed out") { "answered" }
        #expect(quick == "answered")
    }
}
