# Writes OUTPUT: a C++ file defining `const std::vector<ds::Migration> SYMBOL` from the
# NNNN_name.sql files in DIR (sorted by name). Run with cmake -P.
file(GLOB INPUTS ${DIR}/*.sql)
list(SORT INPUTS)
set(body "#include \"index/migrations.h\"\nnamespace ds {\nconst std::vector<Migration> ${SYMBOL} = {\n")
foreach(f ${INPUTS})
  get_filename_component(name ${f} NAME)
  string(REGEX MATCH "^([0-9]+)_" _ ${name})
  math(EXPR version "${CMAKE_MATCH_1}")
  file(READ ${f} sql)
  string(APPEND body "  {${version}, \"${name}\", R\"ds_sql(${sql})ds_sql\"},\n")
endforeach()
string(APPEND body "};\n}  // namespace ds\n")
file(WRITE ${OUTPUT} "${body}")
