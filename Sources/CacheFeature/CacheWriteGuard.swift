import HTTPAPI
import OCIModel
import RegistryCore
import RegistryStore

extension PullThrough {
    /// A repository a cache rule covers is filled from its upstream only: a client's push there
    /// (Push rights on `mirror/*` are not rights over what the mirror serves) would be served as
    /// the upstream's image. When the rules cannot be read the push is refused (deny by default),
    /// unlike a read, which then serves what is cached.
    public func refusesClientWrites(_ repository: RepositoryName) async throws -> String? {
        let rules: [(CacheRuleRecord, CacheRulePattern)]
        do { rules = try await currentRules() } catch {
            logger.error("cache rules cannot be read: \(error)")
            throw RegistryError(.tooManyRequests, "cannot tell whether \(repository) is a pull-through cache; retry later", status: 503)
        }
        for (rule, pattern) in rules where pattern.upstreamRepository(for: repository.value) != nil {
            return "\(repository) is a pull-through cache (rule \(rule.name)): it is filled from its upstream only and takes no push"
        }
        return nil
    }
}
