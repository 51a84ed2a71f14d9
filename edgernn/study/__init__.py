"""The LSTM-vs-GRU study: training, compare, the folk claims and the decision record."""
