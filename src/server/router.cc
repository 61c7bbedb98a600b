#include "server/router.h"

namespace ds {

std::vector<std::string> SplitPath(const std::string& path) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string::npos) end = path.size();
    if (end > start) out.push_back(path.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

void Router::Add(const std::string& method, const std::string& pattern, RouteHandler handler) {
  routes_.push_back(Route{method, SplitPath(pattern), std::move(handler)});
}

bool Router::Dispatch(const http::Request& request, const http::Responder& respond) const {
  std::vector<std::string> segs = SplitPath(request.path);
  bool path_matched = false;
  for (const Route& r : routes_) {
    if (r.segments.size() != segs.size()) continue;
    PathParams params;
    bool ok = true;
    for (size_t i = 0; i < segs.size() && ok; ++i) {
      const std::string& p = r.segments[i];
      if (p.size() > 2 && p.front() == '{' && p.back() == '}') {
        params[p.substr(1, p.size() - 2)] = segs[i];
      } else {
        ok = p == segs[i];
      }
    }
    if (!ok) continue;
    path_matched = true;
    if (r.method != request.method) continue;
    r.handler(request, params, respond);
    return true;
  }
  if (path_matched) {
    respond(http::ProblemResponse(405, "Method Not Allowed",
                                  request.method + " is not allowed on " + request.path));
  } else {
    respond(http::ProblemResponse(404, "Not Found", "no such endpoint: " + request.path));
  }
  return path_matched;
}

}  // namespace ds
