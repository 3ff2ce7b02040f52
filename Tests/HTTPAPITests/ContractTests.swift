import BerthAPIContract
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing
@testable import HTTPAPI

/// The server speaks the contract the CLI is built on: what one side encodes the other decodes.
@Suite struct ContractTests {
    @Test func requestsEncodedFromTheContractAreUnderstoodAndAnswersDecodeAsIts() async throws {
        let (app, _) = try await makeSecuredApp()
        try await app.test(.router) { client in
            let tokenAnswer = try await client.execute(uri: "/oauth2/token?scope=registry:management:*", method: .get, headers: owner)
            let token = try JSONDecoder().decode(TokenResponse.self, from: Data(buffer: tokenAnswer.body))
            #expect(token.token != nil && token.token == token.access_token && (token.expires_in ?? 0) > 0)

            let change = try JSONEncoder().encode(StatusDaysRequest(status: "enabled", days: 3))
            let changed = try await client.execute(uri: "/api/v1/config/soft-delete", method: .patch, headers: owner,
                                                   body: ByteBuffer(bytes: change))
            #expect(changed.status == .ok)
            let view = try JSONDecoder().decode(SoftDeleteView.self, from: Data(buffer: changed.body))
            #expect(view.status == "enabled" && view.days == 3)

            let refused = try await client.execute(uri: "/api/v1/config/soft-delete", method: .patch, headers: owner,
                                                   body: ByteBuffer(bytes: try JSONEncoder().encode(StatusDaysRequest(status: "maybe"))))
            #expect(refused.status == .badRequest)
            let error = try JSONDecoder().decode(ManagementErrorBody.self, from: Data(buffer: refused.body))
            #expect(error.error.code == "INVALID" && error.error.message.contains("enabled or disabled"))

            let anonymous = try await client.execute(uri: "/api/v1/config/soft-delete", method: .get)
            #expect(anonymous.status == .unauthorized)
            let challenge = try JSONDecoder().decode(OCIErrorBody.self, from: Data(buffer: anonymous.body))
            #expect(challenge.errors.first?.code == "UNAUTHORIZED")
        }
    }
}
