/// The "did you mean …?" of configuration files and task files: which known key a mistyped one
/// is closest to.
public enum EditDistance {
    /// Insertions, deletions and substitutions between two keys, case-insensitive; only the first
    /// 64 bytes count, so a long unknown key costs little.
    public static func between(_ a: String, _ b: String) -> Int {
        let a = Array(a.lowercased().utf8.prefix(64)), b = Array(b.lowercased().utf8.prefix(64))
        guard !a.isEmpty, !b.isEmpty else { return max(a.count, b.count) }
        var row = Array(0...b.count)
        for i in 1...a.count {
            var diagonal = row[0]
            row[0] = i
            for j in 1...b.count {
                let above = row[j]
                row[j] = min(above + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1))
                diagonal = above
            }
        }
        return row[b.count]
    }

    /// The known key closest to `key` when it is at most `maxDistance` edits away.
    public static func closest(to key: String, among known: [String], maxDistance: Int) -> String? {
        guard let best = known.map({ ($0, between(key, $0)) }).min(by: { $0.1 < $1.1 }), best.1 <= maxDistance else { return nil }
        return best.0
    }
}
