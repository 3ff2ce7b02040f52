import OCIModel
import Foundation
@testable import Tasks

enum Fixture {
    /// 2026-11-30T02:03:04Z
    static let run = RunContext(id: "cb1", registry: "berth.example:5000", date: Date(timeIntervalSince1970: 1_796_004_184),
                                commit: "abc123", branch: "main", taskName: "nightly")

    static func parse(_ text: String, values: TaskValues = TaskValues(), limits: TaskLimits = .default,
                      run: RunContext = Fixture.run) throws(TaskFileError) -> TaskFile {
        try TaskFile.parse(text, run: run, values: values, limits: limits)
    }

    /// The refusal of `text`, or nil when it parses.
    static func refusal(_ text: String, values: TaskValues = TaskValues(), limits: TaskLimits = .default) -> TaskFileError? {
        do {
            _ = try parse(text, values: values, limits: limits)
            return nil
        } catch {
            return error
        }
    }

    static func ref(_ text: String) -> ImageReference { try! ImageReference(parsing: text) }
}
