"""SpeechInstructBench (released with InSerter): data ``ddwang2000/SpeechInstructBench``, reference code
``dingdongwang/SpeechInstructBench``.

Scoring follows the reference evaluation (checkers, strict/loose averaging, judge prompts, 4 judge samples
at temperature 0.5, IAR/ECR) with these deliberate differences:

* rows are matched to responses by row, not by prompt text (equal prompts no longer overwrite each other);
* rows whose audio is missing, whose judge answers never parse, or whose checks raise are counted in the
  results (``unanswered``, ``judge_errors``, ``errors``) and listed with their id and reason on stderr
  and in ``results.json`` (``skipped``) instead of silently dropped;
* judge votes are a strict majority with ties counted as NO, not the first-seen mode;
* judge answers are parsed with or without Markdown fences; every row gets exactly ``samples`` valid
  answers or is a judge error; the open-ended evaluator returns its numbers;
* ``decomposed_questions`` may be a list (as in the released data) or a string;
* ``language:response_language`` accepts ``zh`` and langdetect's ``zh-cn``/``zh-tw``; langdetect is seeded;
* English sentence counting works without downloaded NLTK data (``text_units``).

Modules in reading order: ``choices`` (the names of tasks, variants, languages), ``bench_files`` (files
and rows of the release), ``runner`` (the benchmark as a task of ``eval.task``), ``closed`` (+ ``checkers``,
``text_units``), ``judging`` (+ ``judged``, ``judge_prompts``), ``leaderboard`` (metrics and tables).
"""
