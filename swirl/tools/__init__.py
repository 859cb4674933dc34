"""The agent's tools: a calculator (`<math_exp>`) and a retriever (`<search_query>`), each answering
`QUERY -> RESULT`.

Submodules import their heavy dependencies (sympy, bm25s, sentence-transformers) themselves, so importing this
package stays cheap: `from swirl.tools.calculator import calculate`, `from swirl.tools.search import ...`.
"""
