"""The classifier: frozen VGG16 backbone, the trainable head, training sets and the training loop."""
