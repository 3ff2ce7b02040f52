import Foundation
import XCTest
@testable import TaskRunner

/// The git commands of a run's source: the address pin (what keeps a re-resolved name from
/// reaching an address the outbound check refused), `ls-remote` parsing, object names.
final class GitRemoteTests: XCTestCase {
    func testThePinNamesHostPortAndTheCheckedAddress() {
        XCTAssertEqual(GitRemote.pin(host: "git.example.com", port: 443, address: "93.184.216.34", addressIsV4: true),
                       "git.example.com:443:93.184.216.34")
        XCTAssertEqual(GitRemote.pin(host: "git.example.com", port: 80, address: "2001:db8::1", addressIsV4: false),
                       "git.example.com:80:[2001:db8::1]")
        // An address literal resolves to nothing else: no pin.
        XCTAssertNil(GitRemote.pin(host: "127.0.0.1", port: 80, address: "127.0.0.1", addressIsV4: true))
        XCTAssertNil(GitRemote.pin(host: "::1", port: 80, address: "::1", addressIsV4: false))
        XCTAssertNil(GitRemote.pin(host: "a,b", port: 80, address: "127.0.0.1", addressIsV4: true))
        XCTAssertEqual(GitRemote.options(resolve: "h:1:127.0.0.1").suffix(2), ["-c", "http.curloptResolve=h:1:127.0.0.1"])
        XCTAssertFalse(GitRemote.options(resolve: nil).contains { $0.hasPrefix("http.curloptResolve") })
    }

    /// git connects to the pinned address, never asking the resolver: a name that cannot resolve
    /// is "refused to connect" at the pinned address with the pin, "could not resolve" without.
    func testGitConnectsOnlyToThePinnedAddress() async throws {
        let checkout = SourceCheckout()
        do {
            _ = try await checkout.headCommit(url: "http://pinned.invalid:1/app.git", branch: "main",
                                              resolve: "pinned.invalid:1:127.0.0.1")
            XCTFail("no server listens there")
        } catch {
            XCTAssertTrue(error.description.contains("Failed to connect"), error.description)
            XCTAssertFalse(error.description.contains("resolve"), error.description)
        }
        do {
            _ = try await checkout.headCommit(url: "http://pinned.invalid:1/app.git", branch: "main", resolve: nil)
            XCTFail("the name does not resolve")
        } catch {
            XCTAssertTrue(error.description.contains("resolve"), error.description)
        }
    }

    func testLsRemoteOutputAndObjectNames() throws {
        let a = String(repeating: "a", count: 40)
        let text = "\(String(repeating: "b", count: 40))\trefs/heads/main-2\n\(a)\trefs/heads/main\n"
        XCTAssertEqual(try GitRemote.parseHead(text, branch: "main"), a)
        XCTAssertNil(try GitRemote.parseHead(text, branch: "dev"))
        XCTAssertNil(try GitRemote.parseHead("", branch: "main"))
        XCTAssertThrowsError(try GitRemote.parseHead("zzz\trefs/heads/main", branch: "main"))
        XCTAssertTrue(GitRemote.isObjectName(a) && GitRemote.isObjectName(String(repeating: "0", count: 64)))
        for bad in ["", "HEAD", String(a.dropLast()), a.uppercased(), a + "a", "-" + a.dropFirst()] {
            XCTAssertFalse(GitRemote.isObjectName(bad), bad)
        }
    }

    func testACloneRefusesACommitThatIsNoObjectName() async {
        do {
            try await SourceCheckout().gitClone(url: "http://127.0.0.1:1/app.git", branch: "main", into: NSTemporaryDirectory() + "x",
                                                commit: "--upload-pack=touch /tmp/x")
            XCTFail("accepted")
        } catch {
            XCTAssertTrue(error.description.contains("invalid commit"), error.description)
        }
    }
}
