import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import NIOConcurrencyHelpers
import OCIModel
import RegistryStore
import Testing
@testable import Access

/// The outbound policy (SSRF): which destinations Berth may contact on its own.
@Suite struct OutboundPolicyTests {
    @Test(arguments: ["http://127.0.0.1/", "http://127.9.9.9:8080/", "http://localhost/", "http://169.254.169.254/latest/meta-data/",
                      "http://2130706433/", "http://0x7f000001/", "http://0177.0.0.1/", "http://0.0.0.0/", "http://10.1.2.3/",
                      "http://172.16.0.1/", "http://172.31.255.255/", "http://192.168.0.10/", "http://100.64.0.1/", "http://224.0.0.1/",
                      "http://255.255.255.255/", "http://[::1]/", "http://[::]/", "http://[fe80::1]/", "http://[fd12:3456::1]/",
                      "http://[ff02::1]/", "http://[::ffff:127.0.0.1]/", "http://[::ffff:169.254.169.254]/", "http://[::ffff:10.0.0.1]/"])
    func nonPublicDestinationsAreRefusedByDefault(url: String) async {
        await #expect(throws: OutboundRefused.self) { try await OutboundPolicy().check(url) }
    }

    @Test func publicDestinationsAreAllowedAndConnectedToByAddress() async throws {
        let v4 = try await OutboundPolicy().check("https://93.184.216.34:8443/hook")
        #expect(v4.address == IPAddress("93.184.216.34") && v4.port == 8443 && v4.scheme == "https")
        let v6 = try await OutboundPolicy().check("http://[2606:4700::1]/")
        #expect(v6.address == IPAddress("2606:4700::1") && v6.port == 80)
        #expect(OutboundPolicy().permits(IPAddress("172.32.0.1")!) && OutboundPolicy().permits(IPAddress("100.128.0.1")!))
    }

    @Test func onlyHttpURLsWithAHost() async {
        for url in ["ftp://93.184.216.34/", "file:///etc/passwd", "http:///x", "not a url"] {
            await #expect(throws: OutboundRefused.self) { try await OutboundPolicy().check(url) }
        }
    }

    @Test func theAllowListOpensExactlyWhatItNames() async throws {
        let policy = try OutboundPolicy(allow: "127.0.0.1/32, 10.20.0.0/16,Hooks.Internal")
        _ = try await policy.check("http://127.0.0.1:9000/")
        _ = try await policy.check("http://2130706433:9000/")
        _ = try await policy.check("http://10.20.3.4/")
        await #expect(throws: OutboundRefused.self) { try await policy.check("http://127.0.0.2/") }
        await #expect(throws: OutboundRefused.self) { try await policy.check("http://10.21.0.1/") }
        await #expect(throws: OutboundRefused.self) { try await policy.check("http://169.254.169.254/") }
        #expect(policy.allowedHosts == ["hooks.internal"])
        // A host name on the list allows whatever it resolves to.
        _ = try await OutboundPolicy(allow: "localhost").check("http://LOCALHOST:8080/")
        #expect { try OutboundPolicy(allow: "127.0.0.1/33") } throws: { ($0 as? RegistryError)?.message.contains("prefix length") == true }
        #expect(try OutboundPolicy(allow: "::1, fd00::/8").allowedRanges.count == 2)
        #expect(throws: RegistryError.self) { try OutboundPolicy(allow: "not a host!") }
    }

    @Test func everyResolvedAddressMustBeAllowed() async throws {
        // localhost resolves to 127.0.0.1 and, where IPv6 is configured, ::1. Allowing both lets it
        // through; allowing neither refuses it.
        _ = try await OutboundPolicy(allow: "127.0.0.0/8,::1").check("http://localhost/")
        await #expect(throws: OutboundRefused.self) { try await OutboundPolicy(allow: "10.0.0.0/8").check("http://localhost/") }
    }

    @Test func berthsOwnListenerIsNeverContacted() async throws {
        var policy = try OutboundPolicy(allow: "127.0.0.0/8,::1")
        policy.ownEndpoints = [.init(host: "127.0.0.1", port: 5000)]
        await #expect(throws: OutboundRefused.self) { try await policy.check("http://127.0.0.1:5000/v2/") }
        _ = try await policy.check("http://127.0.0.1:5001/")
        policy.ownEndpoints = [.init(host: "0.0.0.0", port: 5000)]
        await #expect(throws: OutboundRefused.self) { try await policy.check("http://localhost:5000/api/v1/tokens") }
        policy.ownEndpoints = [.init(host: "[::]", port: 5000)]
        await #expect(throws: OutboundRefused.self) { try await policy.check("http://[::1]:5000/") }
        policy.ownEndpoints = [.init(host: "2001:db8::", port: 5000)]   // a specific address, not "every address"
        _ = try await policy.check("http://127.0.0.1:5000/")
        policy.ownEndpoints = [.init(host: "Registry.Example.com", port: 443)]
        await #expect(throws: OutboundRefused.self) { try await policy.check("https://registry.example.com/") }
    }

    @Test func configuringAnIssuerOnAForbiddenAddressIsRefused() async throws {
        let (access, _) = try await makeAccess()
        _ = try await access.createIdentity(admin, name: "ci", kind: "service-principal", withPassword: false)
        for issuer in ["http://169.254.169.254/", "http://127.0.0.1:8080", "http://2130706433/"] {
            await #expect {
                try await access.addFederatedCredential(admin, identity: "ci", name: "main", issuer: issuer, subject: "s", audiences: ["berth"])
            } throws: { error in
                guard case AccessError.invalid(let message) = error else { return false }
                return message.hasPrefix("issuer refused:")
            }
        }
    }

    @Test func jwksAreFetchedOnlyFromAllowedAddressesAndTheIssuersOrigin() async throws {
        let jwksURL = NIOLockedValueBox("")
        let issuerURL = NIOLockedValueBox("")
        let router = Router()
        router.get("/.well-known/openid-configuration") { _, _ -> Response in
            let body = #"{"issuer":"\#(issuerURL.withLockedValue { $0 })","jwks_uri":"\#(jwksURL.withLockedValue { $0 })"}"#
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: .init(string: body)))
        }
        router.get("/jwks") { _, _ -> Response in
            Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: .init(string: #"{"keys":[]}"#)))
        }
        var logger = Logger(label: "issuer")
        logger.logLevel = .critical
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)), logger: logger)
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let issuer = "http://127.0.0.1:\(port)"
            issuerURL.withLockedValue { $0 = issuer }
            let allowed = HTTPJWKSSource(policy: try OutboundPolicy(allow: "127.0.0.1/32"))
            jwksURL.withLockedValue { $0 = issuer + "/jwks" }
            #expect(try await allowed.jwks(issuer: issuer).keys.isEmpty)
            // Not on the issuer's origin: another port, another host name, another scheme.
            for foreign in ["http://127.0.0.1:\(port + 1)/jwks", "http://localhost:\(port)/jwks", "https://127.0.0.1:\(port)/jwks"] {
                jwksURL.withLockedValue { $0 = foreign }
                await #expect(throws: OIDCError.self) { try await allowed.jwks(issuer: issuer) }
            }
            // Loopback is not contacted at all without the allow list.
            jwksURL.withLockedValue { $0 = issuer + "/jwks" }
            await #expect(throws: OutboundRefused.self) { try await HTTPJWKSSource().jwks(issuer: issuer) }
        }
    }
}
