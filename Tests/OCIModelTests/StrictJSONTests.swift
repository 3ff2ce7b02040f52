import Foundation
import Testing
@testable import OCIModel

@Suite struct StrictJSONTests {
    func check(_ s: String, maxDepth: Int = StrictJSON.defaultMaxDepth) throws(StrictJSON.Failure) {
        try StrictJSON.checkDuplicateKeys(Array(s.utf8), maxDepth: maxDepth)
    }

    func duplicate(_ s: String) -> String? {
        do { try check(s); return nil } catch {
            if case .duplicateKey(let key, _) = error { return key }
            return "other: \(error)"
        }
    }

    @Test func acceptsOrdinaryJSON() throws {
        try check(#"{"a":1,"b":[{"a":2},{"a":3}],"c":{"a":{"a":null}},"d":"}{][\"","e":"\\"}"#)
        try check(#"[1,"a",{"x":"y"},[]]"#)
        try check(#"  "just a string"  "#)
        try check("")
    }

    @Test func sameKeyInDifferentObjectsIsFine() throws {
        try check(#"{"layers":[{"digest":"x"},{"digest":"y"}],"config":{"digest":"z"}}"#)
    }

    @Test func refusesDuplicatesAtAnyDepth() {
        #expect(duplicate(#"{"layers":[],"layers":[1]}"#) == "layers")
        #expect(duplicate(#"{"a":{"b":[{"subject":1,"x":2,"subject":3}]}}"#) == "subject")
        #expect(duplicate(#"{"a":{"b":{"c":1,"c":1}}}"#) == "c")
    }

    @Test func keysAreComparedAfterDecodingEscapes() {
        #expect(duplicate(#"{"a":1,"\u0061":2}"#) == "a")
        #expect(duplicate(#"{"\u006C\u0061yers":1,"layers":2}"#) == "layers")
        #expect(duplicate(#"{"a\/b":1,"a/b":2}"#) == "a/b")
        #expect(duplicate(#"{"\ud83d\ude00":1,"😀":2}"#) == "😀")
        #expect(duplicate(#"{"\"":1,"\u0022":2}"#) == "\"")
        // Lone surrogates decode to U+FFFD (as in Go), so two different ones collide.
        #expect(duplicate(#"{"\ud800":1,"\udc00":2}"#) == "\u{FFFD}")
        // Canonically equivalent spellings are one key to Swift's decoders.
        #expect(duplicate(#"{"\u00e9":1,"e\u0301":2}"#) != nil)
        // A string value equal to a key is not a key.
        #expect(duplicate(#"{"a":"a","b":"a"}"#) == nil)
        #expect(duplicate(#"{"a":"\u0061","\u0062":"b"}"#) == nil)
    }

    @Test func describesTheDuplicate() {
        #expect(throws: StrictJSON.Failure.duplicateKey("digest", path: ".layers[]")) {
            try check(#"{"layers":[{"digest":"a","digest":"b"}]}"#)
        }
        let message = "\(StrictJSON.Failure.duplicateKey("a\u{1}\"", path: "the top level"))"
        #expect(message == #"duplicate key "a\u{01}\"" in the object at the top level"#)
    }

    @Test func boundsTheDepth() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(throws: StrictJSON.Failure.tooDeep(limit: StrictJSON.defaultMaxDepth)) { try check(deep) }
        let deepObjects = String(repeating: #"{"a":"#, count: 200) + "1" + String(repeating: "}", count: 200)
        #expect(throws: StrictJSON.Failure.tooDeep(limit: StrictJSON.defaultMaxDepth)) { try check(deepObjects) }
        #expect(throws: StrictJSON.Failure.tooDeep(limit: 3)) { try check("[[[[]]]]", maxDepth: 3) }
        #expect((try? check("[[[]]]", maxDepth: 3)) != nil)
    }

    @Test func refusesBrokenStructure() {
        for bad in [#"{"a":1"#, #"{"a":1]"#, #"[}"#, "}", #"{"a\"}"#, #"{"a":"b\"#, #"{"\u12":1}"#, #"{"\uZZZZ":1}"#] {
            #expect(throws: StrictJSON.Failure.self, "\(bad)") { try check(bad) }
        }
    }

    @Test func handlesHugeInputsInOnePass() throws {
        // 200 000 distinct keys, then the same object with its last key repeated.
        var s = "{"
        for k in 0..<200_000 { s += "\"k\(k)\":\(k)," }
        try check(s + #""end":0}"#)
        #expect(duplicate(s + #""k199999":0}"#) == "k199999")
        // A 4 MiB string value full of escaped quotes and brackets.
        let filler = String(repeating: #"\"{["#, count: 1 << 20)
        try check(#"{"a":""# + filler + #"","b":1}"#)
        #expect(duplicate(#"{"a":""# + filler + #"","a":1}"#) == "a")
    }

    @Test func manifestWithDuplicateKeysIsInvalid() {
        let d = "sha256:" + String(repeating: "1", count: 64)
        let desc = #"{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"\#(d)","size":1}"#
        for json in [
            #"{"schemaVersion":2,"config":\#(desc),"layers":[],"layers":[\#(desc)]}"#,
            #"{"schemaVersion":2,"config":\#(desc),"layers":[],"subject":\#(desc),"subject":\#(desc)}"#,
            #"{"schemaVersion":2,"manifests":[{"mediaType":"a/b","mediaType":"c/d","digest":"\#(d)","size":1}]}"#,
        ] {
            do {
                _ = try ManifestParser.parse(Array(json.utf8), contentType: nil)
                Issue.record("accepted \(json)")
            } catch {
                #expect(error.code == .manifestInvalid)
                #expect(error.status == 400)
                #expect(error.message.contains("duplicate key"))
            }
        }
    }
}
