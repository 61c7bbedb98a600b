// Method + path-pattern routing for the server's HTTP handler. Patterns are '/'-separated
// literals and {name} placeholders matching one non-empty segment.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "http/http_server.h"

namespace ds {

using PathParams = std::map<std::string, std::string>;
using RouteHandler =
    std::function<void(const http::Request&, const PathParams&, http::Responder)>;

class Router {
 public:
  // REQUIRES: called before the server starts (not thread-safe against Dispatch).
  void Add(const std::string& method, const std::string& pattern, RouteHandler handler);
  // Finds the route and runs it; answers 404 / 405 problem+json itself. Returns true if a route
  // matched the path.
  bool Dispatch(const http::Request& request, const http::Responder& respond) const;

 private:
  struct Route {
    std::string method;
    std::vector<std::string> segments;
    RouteHandler handler;
  };
  std::vector<Route> routes_;
};

std::vector<std::string> SplitPath(const std::string& path);

}  // namespace ds
