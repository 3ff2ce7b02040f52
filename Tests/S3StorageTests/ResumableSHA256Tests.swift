import Foundation
import OCIModel
import Testing
@testable import S3Storage

/// The SHA-256 whose state is saved in an upload's session at each part boundary.
@Suite struct ResumableSHA256Tests {
    static func digest(_ bytes: [UInt8]) throws -> Digest {
        var h = try ResumableSHA256()
        h.update(bytes)
        return h.finalize()
    }

    @Test func fipsVectors() throws {
        #expect(ResumableSHA256.isAvailable)
        #expect(try Self.digest([]).hex == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(try Self.digest(Array("abc".utf8)).hex == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(try Self.digest(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)).hex
            == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(try Self.digest(Array(repeating: UInt8(ascii: "a"), count: 1_000_000)).hex
            == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    /// Against swift-crypto on random inputs, saved and restored at random split points (block
    /// boundaries and not), several times per input.
    @Test func matchesSwiftCryptoAcrossSavesAndRestores() throws {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            let count = Int.random(in: 0...5000, using: &rng)
            let data = (0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) }
            var splits = (0..<Int.random(in: 0...4, using: &rng)).map { _ in Int.random(in: 0...count, using: &rng) }
            if count >= 128 { splits.append(64 * Int.random(in: 0...(count / 64), using: &rng)) }
            splits.sort()
            var hasher = try ResumableSHA256()
            var at = 0
            for split in splits {
                hasher.update(Array(data[at..<split]))
                at = split
                let saved = hasher.export()
                hasher = try ResumableSHA256(restoring: saved, covering: Int64(at))
            }
            hasher.update(Array(data[at...]))
            #expect(hasher.finalize() == Digest.compute(data), "count \(count), splits \(splits)")
        }
    }

    @Test func savedStatesThatDoNotMatchAreRefused() throws {
        var hasher = try ResumableSHA256()
        hasher.update(Array(repeating: 7, count: 130))
        let saved = hasher.export()
        #expect(saved.count == 42 + 2)
        // Bound to the byte count it covers.
        #expect(throws: ResumableSHA256.StateError.coversOther(130)) { try ResumableSHA256(restoring: saved, covering: 128) }
        #expect(throws: ResumableSHA256.StateError.malformed) { try ResumableSHA256(restoring: [], covering: 0) }
        #expect(throws: ResumableSHA256.StateError.malformed) { try ResumableSHA256(restoring: Array(saved.dropLast()), covering: 130) }
        #expect(throws: ResumableSHA256.StateError.malformed) { try ResumableSHA256(restoring: saved + [0], covering: 130) }
        var version = saved
        version[0] = 2
        #expect(throws: ResumableSHA256.StateError.malformed) { try ResumableSHA256(restoring: version, covering: 130) }
        // The unfinished block's length must be the count's remainder.
        var num = saved
        num[41] = 3
        #expect(throws: ResumableSHA256.StateError.malformed) { try ResumableSHA256(restoring: num + [0], covering: 130) }
        var huge = saved
        for i in 33..<41 { huge[i] = 0xFF }
        #expect(throws: ResumableSHA256.StateError.malformed) { try ResumableSHA256(restoring: huge, covering: 130) }
        #expect(try ResumableSHA256(restoring: saved, covering: 130).finalize() == hasher.finalize())
    }
}
