import Foundation
import Testing
@testable import S3Storage

/// SigV4 against the worked examples of the S3 documentation ("Authenticating Requests: Using the
/// Authorization Header" and "... Using Query Parameters", AWS Signature Version 4): credentials
/// AKIAIOSFODNN7EXAMPLE / wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY, us-east-1, 2013-05-24 00:00:00 UTC,
/// object test.txt in examplebucket (virtual-hosted, so the path is /test.txt).
@Suite struct SigV4Tests {
    let signer = SigV4Signer(credentials: S3Credentials(accessKey: "AKIAIOSFODNN7EXAMPLE",
                                                        secretKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
                             region: "us-east-1")
    let date = Date(timeIntervalSince1970: 1_369_353_600) // 20130524T000000Z

    @Test func amzDate() {
        #expect(SigV4Signer.amzDate(date) == "20130524T000000Z")
        #expect(SigV4Signer.amzDate(Date(timeIntervalSince1970: 1_795_000_000.9)) == "20261118T110640Z")
    }

    @Test func documentedGetObjectWithHeaderAuthorization() {
        let headers = signer.signHeaders(method: "GET", encodedPath: "/test.txt", query: [],
                                         headers: [("host", "examplebucket.s3.amazonaws.com"), ("Range", "bytes=0-9")],
                                         payloadHash: SigV4Signer.emptyPayloadHash, date: date)
        let (canonical, signed) = SigV4Signer.canonicalRequest(
            method: "GET", encodedPath: "/test.txt", query: [],
            headers: headers.filter { $0.0 != "Authorization" }, payloadHash: SigV4Signer.emptyPayloadHash)
        #expect(canonical == """
            GET
            /test.txt

            host:examplebucket.s3.amazonaws.com
            range:bytes=0-9
            x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
            x-amz-date:20130524T000000Z

            host;range;x-amz-content-sha256;x-amz-date
            e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
            """)
        #expect(signed == "host;range;x-amz-content-sha256;x-amz-date")
        #expect(signer.stringToSign(canonicalRequest: canonical, amzDate: "20130524T000000Z") == """
            AWS4-HMAC-SHA256
            20130524T000000Z
            20130524/us-east-1/s3/aws4_request
            7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972
            """)
        let authorization = headers.first { $0.0 == "Authorization" }?.1
        #expect(authorization == "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
            + "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
            + "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
    }

    @Test func documentedPresignedGetURL() {
        let query = signer.presignQuery(method: "GET", host: "examplebucket.s3.amazonaws.com", encodedPath: "/test.txt",
                                        expires: 86400, date: date)
        #expect(SigV4Signer.canonicalQuery(query) == "X-Amz-Algorithm=AWS4-HMAC-SHA256"
            + "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
            + "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400"
            + "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
            + "&X-Amz-SignedHeaders=host")
    }

    @Test func uriEncodingOfKeys() {
        // Unreserved characters stay, '/' stays in paths only, everything else is %XX of its UTF-8.
        #expect(SigV4Signer.uriEncode("a-b_c.d~e", keepSlash: true) == "a-b_c.d~e")
        #expect(SigV4Signer.uriEncode("a b", keepSlash: true) == "a%20b")
        #expect(SigV4Signer.uriEncode("a+b", keepSlash: true) == "a%2Bb")
        #expect(SigV4Signer.uriEncode("p/q/r", keepSlash: true) == "p/q/r")
        #expect(SigV4Signer.uriEncode("p/q", keepSlash: false) == "p%2Fq")
        #expect(SigV4Signer.uriEncode("ü€", keepSlash: true) == "%C3%BC%E2%82%AC")
        #expect(SigV4Signer.uriEncode("%2F*=&", keepSlash: true) == "%252F%2A%3D%26")
    }

    @Test func canonicalQueryEncodesAndSorts() {
        #expect(SigV4Signer.canonicalQuery([]) == "")
        // Names sorted by their encoded form; a name without a value keeps its '='.
        #expect(SigV4Signer.canonicalQuery([("uploads", ""), ("prefix", "a b/c~")]) == "prefix=a%20b%2Fc~&uploads=")
        // Repeated names are ordered by value, so the order they were given in does not matter.
        #expect(SigV4Signer.canonicalQuery([("k", "b"), ("k", "a"), ("j", "z")]) == "j=z&k=a&k=b")
        #expect(SigV4Signer.canonicalQuery([("k", "a"), ("k", "b"), ("j", "z")]) == "j=z&k=a&k=b")
        // Sorted by the encoded bytes: "%" before upper-case before lower-case letters.
        #expect(SigV4Signer.canonicalQuery([("b", "1"), ("B", "2"), ("ä", "3")]) == "%C3%A4=3&B=2&b=1")
    }

    @Test func headerValuesAreTrimmedAndRepeatedHeadersJoined() {
        let (canonical, signed) = SigV4Signer.canonicalRequest(
            method: "PUT", encodedPath: "/b/k", query: [("partNumber", "1")],
            headers: [("Host", "h"), ("X-Amz-Meta-A", "  one   two  "), ("x-amz-meta-a", "three")], payloadHash: "UNSIGNED-PAYLOAD")
        #expect(canonical == "PUT\n/b/k\npartNumber=1\nhost:h\nx-amz-meta-a:one two,three\n\nhost;x-amz-meta-a\nUNSIGNED-PAYLOAD")
        #expect(signed == "host;x-amz-meta-a")
    }

    @Test func credentialsNeverPrintTheirSecret() {
        let c = S3Credentials(accessKey: "AK", secretKey: "topsecret")
        #expect(!"\(c)".contains("topsecret"))
        #expect(!String(reflecting: c).contains("topsecret"))
    }
}
