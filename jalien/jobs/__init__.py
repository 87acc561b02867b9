"""Jobs: JDL, the task queue, job states, the broker and job tokens."""
