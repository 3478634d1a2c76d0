import Foundation
import Hummingbird
import MarqueeCore

/// `GET /admin` (the live dashboard page) and `GET /api/admin/metrics`, its data: the same Prometheus text as
/// `/metrics`, for the service role only, so that the page computes everything from the numbers Prometheus sees.
struct AdminController: Sendable {
    let dependencies: AppDependencies
    let auth: Authenticator

    func addRoutes<Context: RequestContext>(to router: Router<Context>) {
        router.get("/admin") { request, _ in try WebController(dependencies: dependencies).page("admin.html", request: request) }
        router.get("/api/admin/metrics") { request, _ in
            try await auth.requireServiceRole(request)
            return await MetricsController(dependencies: dependencies).response()
        }
    }
}
