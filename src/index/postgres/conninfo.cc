#include "index/postgres/conninfo.h"

#include <libpq-fe.h>

namespace ds {

std::string ConninfoPassword(const std::string& conninfo) {
  std::string password;
  char* error = nullptr;
  PQconninfoOption* parsed = PQconninfoParse(conninfo.c_str(), &error);
  if (error != nullptr) PQfreemem(error);
  if (parsed == nullptr) return password;
  for (const PQconninfoOption* o = parsed; o->keyword != nullptr; ++o) {
    if (o->val != nullptr && std::string(o->keyword) == "password") password = o->val;
  }
  PQconninfoFree(parsed);
  return password;
}

std::string ScrubPassword(std::string message, const std::string& password) {
  while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
  for (char& c : message) {
    if (c == '\n' || c == '\t') c = ' ';
  }
  if (password.empty()) return message;
  for (size_t at = message.find(password); at != std::string::npos;
       at = message.find(password, at)) {
    message.replace(at, password.size(), "********");
    at += 8;
  }
  return message;
}

}  // namespace ds
