"""The paper's evaluations of frozen encoders (design section 7).

- :mod:`.vpr`: visual place recognition, Recall@K on a database and queries (Table 1).
- :mod:`.socioeconomic`: zone indicator R² of several encoders side by side (Table 2).
- :mod:`.safety`: Place Pulse 2.0 safe/unsafe perception with a linear probe (Table 3).
- :mod:`.attention`: attention maps, mean attention distance and Fourier analysis (Fig. 2).

Every evaluation compares *encoders*: :mod:`.encoders` names them (a checkpoint, a named
architecture with random weights, or the non-learned colour-thumbnail baseline) and turns
image files into one descriptor matrix per encoder; :mod:`.tables` writes the rows of a
result table as CSV and Markdown. Nothing here imports torch at module level.
"""
