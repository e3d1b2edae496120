package sqllex

// keywordCategory is PostgreSQL's classification of a keyword
// (src/include/parser/kwlist.h). Only the categories that restrict where a
// word may stand are listed; every other word, unreserved keywords
// included, may be used as a name.
type keywordCategory uint8

const (
	notReserved     keywordCategory = iota // an identifier or unreserved keyword
	colNameKeyword                         // may name a column, not a function or type
	typeFuncKeyword                        // may name a function or type, not a column
	reservedKeyword                        // may name nothing unquoted
)

// keywords is the union of the restricted keywords of PostgreSQL 15
// (pg_get_keywords()), 16 and 17. A word listed here that a given server
// treats as a plain identifier is only ever quoted needlessly by
// QuoteIdent or refused by a parser that then forwards the statement
// untouched, both of which are safe.
var keywords = map[string]keywordCategory{
	// type_func_name_keyword
	"authorization": typeFuncKeyword, "binary": typeFuncKeyword, "collation": typeFuncKeyword,
	"concurrently": typeFuncKeyword, "cross": typeFuncKeyword, "current_schema": typeFuncKeyword,
	"freeze": typeFuncKeyword, "full": typeFuncKeyword, "ilike": typeFuncKeyword, "inner": typeFuncKeyword,
	"is": typeFuncKeyword, "isnull": typeFuncKeyword, "join": typeFuncKeyword, "left": typeFuncKeyword,
	"like": typeFuncKeyword, "natural": typeFuncKeyword, "notnull": typeFuncKeyword, "outer": typeFuncKeyword,
	"overlaps": typeFuncKeyword, "right": typeFuncKeyword, "similar": typeFuncKeyword,
	"tablesample": typeFuncKeyword, "verbose": typeFuncKeyword,

	// col_name_keyword
	"between": colNameKeyword, "bigint": colNameKeyword, "bit": colNameKeyword, "boolean": colNameKeyword,
	"char": colNameKeyword, "character": colNameKeyword, "coalesce": colNameKeyword, "dec": colNameKeyword,
	"decimal": colNameKeyword, "exists": colNameKeyword, "extract": colNameKeyword, "float": colNameKeyword,
	"greatest": colNameKeyword, "grouping": colNameKeyword, "inout": colNameKeyword, "int": colNameKeyword,
	"integer": colNameKeyword, "interval": colNameKeyword, "least": colNameKeyword, "national": colNameKeyword,
	"nchar": colNameKeyword, "none": colNameKeyword, "normalize": colNameKeyword, "nullif": colNameKeyword,
	"numeric": colNameKeyword, "out": colNameKeyword, "overlay": colNameKeyword, "position": colNameKeyword,
	"precision": colNameKeyword, "real": colNameKeyword, "row": colNameKeyword, "setof": colNameKeyword,
	"smallint": colNameKeyword, "substring": colNameKeyword, "time": colNameKeyword,
	"timestamp": colNameKeyword, "treat": colNameKeyword, "trim": colNameKeyword, "values": colNameKeyword,
	"varchar": colNameKeyword, "xmlattributes": colNameKeyword, "xmlconcat": colNameKeyword,
	"xmlelement": colNameKeyword, "xmlexists": colNameKeyword, "xmlforest": colNameKeyword,
	"xmlnamespaces": colNameKeyword, "xmlparse": colNameKeyword, "xmlpi": colNameKeyword,
	"xmlroot": colNameKeyword, "xmlserialize": colNameKeyword, "xmltable": colNameKeyword,
	// added by PostgreSQL 16 and 17 (SQL/JSON)
	"json": colNameKeyword, "json_array": colNameKeyword, "json_arrayagg": colNameKeyword,
	"json_exists": colNameKeyword, "json_object": colNameKeyword, "json_objectagg": colNameKeyword,
	"json_query": colNameKeyword, "json_scalar": colNameKeyword, "json_serialize": colNameKeyword,
	"json_table": colNameKeyword, "json_value": colNameKeyword, "merge_action": colNameKeyword,

	// reserved_keyword
	"all": reservedKeyword, "analyse": reservedKeyword, "analyze": reservedKeyword, "and": reservedKeyword,
	"any": reservedKeyword, "array": reservedKeyword, "as": reservedKeyword, "asc": reservedKeyword,
	"asymmetric": reservedKeyword, "both": reservedKeyword, "case": reservedKeyword, "cast": reservedKeyword,
	"check": reservedKeyword, "collate": reservedKeyword, "column": reservedKeyword,
	"constraint": reservedKeyword, "create": reservedKeyword, "current_catalog": reservedKeyword,
	"current_date": reservedKeyword, "current_role": reservedKeyword, "current_time": reservedKeyword,
	"current_timestamp": reservedKeyword, "current_user": reservedKeyword, "default": reservedKeyword,
	"deferrable": reservedKeyword, "desc": reservedKeyword, "distinct": reservedKeyword, "do": reservedKeyword,
	"else": reservedKeyword, "end": reservedKeyword, "except": reservedKeyword, "false": reservedKeyword,
	"fetch": reservedKeyword, "for": reservedKeyword, "foreign": reservedKeyword, "from": reservedKeyword,
	"grant": reservedKeyword, "group": reservedKeyword, "having": reservedKeyword, "in": reservedKeyword,
	"initially": reservedKeyword, "intersect": reservedKeyword, "into": reservedKeyword,
	"lateral": reservedKeyword, "leading": reservedKeyword, "limit": reservedKeyword,
	"localtime": reservedKeyword, "localtimestamp": reservedKeyword, "not": reservedKeyword,
	"null": reservedKeyword, "offset": reservedKeyword, "on": reservedKeyword, "only": reservedKeyword,
	"or": reservedKeyword, "order": reservedKeyword, "placing": reservedKeyword, "primary": reservedKeyword,
	"references": reservedKeyword, "returning": reservedKeyword, "select": reservedKeyword,
	"session_user": reservedKeyword, "some": reservedKeyword, "symmetric": reservedKeyword,
	"system_user": reservedKeyword, "table": reservedKeyword, "then": reservedKeyword, "to": reservedKeyword,
	"trailing": reservedKeyword, "true": reservedKeyword, "union": reservedKeyword, "unique": reservedKeyword,
	"user": reservedKeyword, "using": reservedKeyword, "variadic": reservedKeyword, "when": reservedKeyword,
	"where": reservedKeyword, "window": reservedKeyword, "with": reservedKeyword,
}

// maxKeywordLen is the length of the longest word in keywords.
const maxKeywordLen = 17 // "current_timestamp"

// categoryOf returns the category of the unquoted word w (any case)
// without allocating.
func categoryOf(w string) keywordCategory {
	if len(w) > maxKeywordLen {
		return notReserved
	}
	var buf [maxKeywordLen]byte
	for i := 0; i < len(w); i++ {
		c := w[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return keywords[string(buf[:len(w)])]
}
