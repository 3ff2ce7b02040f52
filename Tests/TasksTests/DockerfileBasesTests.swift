import Testing
@testable import Tasks

@Suite struct DockerfileBasesTests {
    struct Case: Sendable, CustomTestStringConvertible {
        let name: String
        let dockerfile: String
        var buildArgs: [String: String] = [:]
        var target: String? = nil
        let runtime: String?
        let buildTime: [String]
        var testDescription: String { name }
    }

    static let cases: [Case] = [
        .init(name: "one stage", dockerfile: "FROM alpine:3.20\nRUN true\n", runtime: "alpine:3.20", buildTime: []),
        .init(name: "scratch is no image", dockerfile: "FROM scratch\nCOPY app /\n", runtime: nil, buildTime: []),
        .init(name: "multi-stage", dockerfile: """
            FROM golang:1.23 AS build
            RUN go build -o /app
            FROM gcr.io/distroless/static:nonroot
            COPY --from=build /app /app
            """, runtime: "gcr.io/distroless/static:nonroot", buildTime: ["golang:1.23"]),
        .init(name: "runtime through stage aliases", dockerfile: """
            from debian:12 as base
            FROM base AS runtime-deps
            FROM golang:1.23 AS build
            FROM RUNTIME-deps
            COPY --from=build /out /
            """, runtime: "debian:12", buildTime: ["golang:1.23"]),
        .init(name: "scratch at the end of the chain", dockerfile: "FROM scratch AS empty\nFROM empty\nCOPY --from=busybox:1 /bin/sh /\n",
              runtime: nil, buildTime: ["busybox:1"]),
        .init(name: "global ARG defaults", dockerfile: """
            ARG REGISTRY=reg.example.com
            ARG VERSION=1.23
            FROM ${REGISTRY}/golang:$VERSION AS build
            FROM $REGISTRY/base:${FLAVOR:-slim}
            COPY --from=build /out /
            """, runtime: "reg.example.com/base:slim", buildTime: ["reg.example.com/golang:1.23"]),
        .init(name: "stages the built one does not need do not count", dockerfile: """
            FROM golang:1.23 AS unused
            FROM alpine AS also-unused
            FROM debian:12
            """, runtime: "debian:12", buildTime: []),
        .init(name: "build args override defaults", dockerfile: """
            ARG REGISTRY=reg.example.com
            ARG FLAVOR
            FROM ${REGISTRY}/base:${FLAVOR:-slim}
            """, buildArgs: ["REGISTRY": "mirror.local:5000", "FLAVOR": "full", "UNDECLARED": "x"],
              runtime: "mirror.local:5000/base:full", buildTime: []),
        .init(name: "platform ARGs need no declaration", dockerfile: "FROM --platform=$BUILDPLATFORM golang:1.23-$TARGETARCH\n",
              buildArgs: ["TARGETARCH": "arm64", "BUILDPLATFORM": "linux/amd64"], runtime: "golang:1.23-arm64", buildTime: []),
        .init(name: "other build args need a declaration", dockerfile: "FROM alpine:${TAG:-3}\n",
              buildArgs: ["TAG": "edge"], runtime: "alpine:3", buildTime: []),
        .init(name: "ARG inside a stage does not reach FROM", dockerfile: "FROM alpine\nARG IMG=evil\nFROM ${IMG:-debian}\n",
              runtime: "debian", buildTime: []),
        .init(name: "target picks the stage and its needs", dockerfile: """
            FROM node:22 AS web
            FROM golang:1.23 AS build
            FROM alpine:3 AS test
            COPY --from=build /x /
            FROM debian:12
            COPY --from=web /dist /
            """, target: "TEST", runtime: "alpine:3", buildTime: ["golang:1.23"]),
        .init(name: "copy from an image, by index and by stage ARG", dockerfile: """
            FROM busybox AS tools
            FROM alpine
            ARG HELPER=docker.io/library/helper:2
            COPY --from=0 /bin/x /
            COPY --link --from=$HELPER /y /
            COPY --from=nginx:1.27 /etc/nginx /etc/nginx
            """, runtime: "alpine", buildTime: ["busybox", "docker.io/library/helper:2", "nginx:1.27"]),
        .init(name: "continuations, comments, platform and escape directive", dockerfile: """
            # escape=`
            # a comment FROM evil
            FROM --platform=$BUILDPLATFORM `
              # comment inside the continuation
              golang:1.23 `
              AS build
            FROM alpine
            COPY --from=build / /
            """, runtime: "alpine", buildTime: ["golang:1.23"]),
        .init(name: "a shift is no heredoc", dockerfile: "FROM alpine\nRUN echo $((1<<2))\n", runtime: "alpine", buildTime: []),
        .init(name: "CRLF line ends", dockerfile: "FROM alpine AS a\r\nFROM busybox\r\nCOPY --from=a / /\r\n",
              runtime: "busybox", buildTime: ["alpine"]),
        .init(name: "same image as build and runtime base", dockerfile: "FROM alpine AS a\nFROM alpine\nCOPY --from=a / /\n",
              runtime: "alpine", buildTime: ["alpine"]),
    ]

    @Test(arguments: cases)
    func findsBases(_ c: Case) throws {
        let bases = try DockerfileBases(dockerfile: c.dockerfile, buildArgs: c.buildArgs, target: c.target)
        #expect(bases.runtimeBase?.description == c.runtime)
        #expect(bases.buildTimeBases.map(\.description) == c.buildTime)
    }

    static let refusals: [(String, String?, TaskFileError.Reason, Int, String)] = [
        ("RUN true\n", nil, .syntax, 1, "comes before the first FROM"),
        ("# nothing\n", nil, .missingKey, 0, "no FROM"),
        ("FROM alpine\n", "nope", .invalidValue, 0, "target stage 'nope'"),
        ("ARG IMG\nFROM $IMG\n", nil, .invalidValue, 2, "empty image"),
        ("FROM Alpine\n", nil, .invalidValue, 1, "invalid repository name"),
        ("FROM alpine AS\n", nil, .syntax, 1, "optionally AS"),
        ("FROM alpine AS a\nFROM alpine AS A\n", nil, .invalidValue, 2, "used twice"),
        ("FROM alpine\nCOPY --from=3 / /\n", nil, .invalidValue, 2, "not an earlier stage"),
        // Any RUN --mount (the installed buildah lets a cache or bind mount reach the host), however spelled or continued.
        ("FROM alpine\nRUN --mount=type=cache,id=../../..,target=/h cat /h/etc/shadow\n", nil, .refused, 2, "CVE-2024-9675"),
        ("FROM alpine AS s\nFROM alpine\nRUN --network=none \\\n  --MOUNT=type=bind,from=s,source=l,rw true\n", nil, .refused, 3, "is refused"),
        ("# escape=`\nFROM alpine\nRUN `\n --mount type=tmpfs,target=/t true\n", nil, .refused, 3, "is refused"),
        // What a second parser could read differently from buildah 1.28's (review): every RUN
        // flag, however spelled; ONBUILD RUN flags; CRLF; whitespace buildah splits on; unknown
        // keywords (a line this reader would skip); directives after another; heredocs.
        ("FROM alpine\nRUN --\"mount\"=type=cache,id=../..,target=/h true\n", nil, .refused, 2, "is refused"),
        ("FROM alpine\nENV M=mount\nRUN --$M=type=cache,id=../..,target=/h true\n", nil, .refused, 3, "is refused"),
        ("FROM alpine\nONBUILD RUN --mount=type=cache,id=../..,target=/h true\n", nil, .refused, 2, "is refused"),
        ("FROM alpine\nRUN true\r\nRUN --mount=type=cache,id=../..,target=/h true\n", nil, .refused, 3, "is refused"),
        ("FROM alpine\nRUN\u{0B}--mount=type=cache,id=../..,target=/h true\n", nil, .invalidEncoding, 2, "control character"),
        ("FROM alpine\nRUN\u{A0}--mount=type=cache,id=../..,target=/h true\n", nil, .refused, 2, "is refused"),
        ("FROM alpine\n\u{A0}RUN --mount=type=cache,id=../..,target=/h true\n", nil, .refused, 2, "is refused"),
        ("# syntax=docker/dockerfile:1\n# escape=`\nFROM alpine\nRUN \\\n--mount=type=cache,id=../..,target=/h true\n", nil, .refused, 4, "is refused"),
        (" # escape=`\nFROM alpine\nRUN `\n--mount=type=cache,id=../..,target=/h true\n", nil, .syntax, 4, "is not a Dockerfile instruction"),
        ("FROM alpine\nRUN <<EOF\nRUN --mount=type=cache,id=../..,target=/h true\nEOF\n", nil, .refused, 2, "heredocs"),
        ("FROM ${X/a/b}\n", nil, .variable, 1, "unsupported substitution"),
        ("FROM ${X\n", nil, .variable, 1, "not closed"),
        ("# escape=x\nFROM alpine\n", nil, .invalidValue, 1, "escape directive"),
        (String(repeating: "FROM alpine\n", count: 129), nil, .tooManySteps, 129, "more than 128 stages"),
        ("FROM alpine\n# " + String(repeating: "x", count: 1_100_000), nil, .tooLarge, 0, "bytes a Dockerfile may have"),
        ("ARG A=" + String(repeating: "x", count: 3000) + "\nFROM $A$A\n", nil, .variable, 2, "more than 4096 bytes"),
    ]

    @Test(arguments: refusals)
    func refuses(_ dockerfile: String, _ target: String?, _ reason: TaskFileError.Reason, _ line: Int, _ says: String) {
        do {
            _ = try DockerfileBases(dockerfile: dockerfile, target: target)
            Issue.record("parsed")
        } catch {
            #expect(error.reason == reason, "\(error)")
            #expect(error.line == line, "\(error)")
            #expect(error.message.contains(says), "\(error)")
            #expect(error.source == "Dockerfile")
        }
    }

    @Test func stagesAreReported() throws {
        let bases = try DockerfileBases(dockerfile: "FROM golang AS build\nFROM build AS test\nFROM scratch\n", target: "test")
        #expect(bases.stages.map(\.name) == ["build", "test", nil])
        #expect(bases.stages.map(\.line) == [1, 2, 3])
        #expect(bases.stages.map(\.base) == [.image(Fixture.ref("golang")), .stage(0), .scratch])
        #expect(bases.builtStage == 1)
        #expect(bases.runtimeBase == Fixture.ref("golang"))
        #expect(bases.buildTimeBases.isEmpty)
    }
}
