import Testing
@testable import S3Storage

@Suite struct S3XMLTests {
    @Test func readsAnS3Answer() throws {
        let xml = """
            <?xml version="1.0" encoding="UTF-8"?>
            <ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name>
              <!-- a comment -->
              <Contents><Key>a&amp;b &lt;&#x263A;&#65;&gt;</Key><Size>3</Size></Contents>
              <Contents><Key>c</Key><Size>4</Size><Empty/></Contents>
              <IsTruncated>false</IsTruncated>
            </ListBucketResult>
            """
        let root = try S3XML.parse(Array(xml.utf8))
        #expect(root.name == "ListBucketResult")
        #expect(root.value("Name") == "b")
        #expect(root.all("Contents").map { $0.value("Key") } == ["a&b <☺A>", "c"])
        #expect(root.all("Contents")[1].child("Empty")?.text == "")
        #expect(root.value("IsTruncated") == "false")
    }

    @Test(arguments: [
        ("", "no root element"),
        ("<a>", "not closed"),
        ("<a><b></a>", "does not close"),
        ("<a></a><b/>", "after the root"),
        ("<a", "truncated"),
        ("<a>&bogus;</a>", "unknown reference"),
        ("<a>&amp</a>", "unterminated"),
        ("<!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>", "DOCTYPE"),
        ("<a><![CDATA[x]]></a>", "CDATA"),
        ("<a><!-- open</a>", "comment"),
        ("<a>&#0;</a>", "unknown reference"),
        ("<a b='>'", "truncated"),
    ])
    func refusesHostileOrTruncatedInput(_ input: String, _ reason: String) {
        #expect(throws: S3XMLError.self) { try S3XML.parse(Array(input.utf8)) }
        do {
            _ = try S3XML.parse(Array(input.utf8))
        } catch {
            #expect(error.description.contains(reason), "\(error)")
        }
    }

    @Test func refusesDeepNesting() {
        let deep = String(repeating: "<a>", count: 100) + String(repeating: "</a>", count: 100)
        #expect(throws: S3XMLError.self) { try S3XML.parse(Array(deep.utf8)) }
        let fine = String(repeating: "<a>", count: 10) + String(repeating: "</a>", count: 10)
        #expect(throws: Never.self) { try S3XML.parse(Array(fine.utf8)) }
    }

    @Test func escapesText() {
        #expect(S3XML.escape("\"a\"&<b>'") == "&quot;a&quot;&amp;&lt;b&gt;&apos;")
    }

    @Test func errorAnswersMapToS3Errors() {
        func body(_ code: String) -> [UInt8] { Array("<Error><Code>\(code)</Code><Message>m</Message></Error>".utf8) }
        #expect(S3Client.error(status: 403, body: body("SignatureDoesNotMatch"), operation: "x") == .signatureMismatch)
        #expect(S3Client.error(status: 403, body: body("InvalidAccessKeyId"), operation: "x") == .invalidAccessKey)
        #expect(S3Client.error(status: 403, body: body("AccessDenied"), operation: "x") == .accessDenied(code: "AccessDenied"))
        #expect(S3Client.error(status: 404, body: body("NoSuchKey"), operation: "x") == .notFound(code: "NoSuchKey"))
        #expect(S3Client.error(status: 404, body: [], operation: "x") == .notFound(code: "NotFound"))
        #expect(S3Client.error(status: 503, body: body("SlowDown"), operation: "x") == .service(status: 503, code: "SlowDown", operation: "x"))
        #expect(S3Client.error(status: 500, body: Array("<Error><Code>".utf8), operation: "x") == .service(status: 500, code: "HTTP500", operation: "x"))
        #expect(S3Error.signatureMismatch.description.contains("secret key"))
    }

    @Test func timesAreRead() {
        #expect(S3Client.parseTime("1970-01-01T00:00:00.000Z") == 0)
        #expect(S3Client.parseTime("2013-05-24T00:00:00Z") == 1_369_353_600)
        #expect(S3Client.parseTime("2024-02-29T12:34:56.789Z") == 1_709_210_096)
        #expect(S3Client.parseTime("2024-02-29 12:34:56Z") == nil)
        #expect(S3Client.parseTime("garbage") == nil)
    }
}
