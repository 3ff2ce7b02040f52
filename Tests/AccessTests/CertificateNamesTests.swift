import Access
import Testing

/// The names a server certificate holds (its subject alternative names), which a task's `berth`
/// steps use to reach the server's own TLS listener with verification on.
@Suite struct CertificateNamesTests {
    @Test func theLeafsDNSNamesAndIPAddressesInOrder() throws {
        let made = try DevelopmentCertificate.make(commonName: "ignored.example", hosts: ["registry.test", "127.0.0.1", "::1", "*.corp.example"])
        #expect(try CertificateNames.leafNames(pem: made.certificatePEM) == ["registry.test", "127.0.0.1", "::1", "*.corp.example"])
        // A chain file: the first certificate is the leaf.
        let other = try DevelopmentCertificate.make(commonName: "ca", hosts: ["ca.example"])
        #expect(try CertificateNames.leafNames(pem: made.certificatePEM + other.certificatePEM).first == "registry.test")
        #expect(try CertificateNames.leafNames(pem: "") == [])
    }
}
