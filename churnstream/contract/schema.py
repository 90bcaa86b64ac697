"""The Telco Customer Churn schema: one definition the producer, validator, model and docs share."""

from __future__ import annotations

from dataclasses import dataclass

ID_COLUMN = "customerID"
LABEL_COLUMN = "Churn"

_YES_NO = ("No", "Yes")
_INTERNET_ADDON = ("No", "No internet service", "Yes")


@dataclass(frozen=True)
class Categorical:
    name: str
    allowed: tuple[str, ...]


@dataclass(frozen=True)
class Numeric:
    name: str
    kind: type  # int or float
    low: float
    high: float
    nullable: bool = False


Feature = Categorical | Numeric

# The 19 feature columns, in the CSV's order. Ranges are generous bounds on what a real
# account can hold (the data set itself spans tenure 0-72, MonthlyCharges 18.25-118.75,
# TotalCharges 18.8-8684.8); values outside them are data errors, not customers.
FEATURES: tuple[Feature, ...] = (
    Categorical("gender", ("Female", "Male")),
    Numeric("SeniorCitizen", int, 0, 1),
    Categorical("Partner", _YES_NO),
    Categorical("Dependents", _YES_NO),
    Numeric("tenure", int, 0, 1200),
    Categorical("PhoneService", _YES_NO),
    Categorical("MultipleLines", ("No", "No phone service", "Yes")),
    Categorical("InternetService", ("DSL", "Fiber optic", "No")),
    Categorical("OnlineSecurity", _INTERNET_ADDON),
    Categorical("OnlineBackup", _INTERNET_ADDON),
    Categorical("DeviceProtection", _INTERNET_ADDON),
    Categorical("TechSupport", _INTERNET_ADDON),
    Categorical("StreamingTV", _INTERNET_ADDON),
    Categorical("StreamingMovies", _INTERNET_ADDON),
    Categorical("Contract", ("Month-to-month", "One year", "Two year")),
    Categorical("PaperlessBilling", _YES_NO),
    Categorical(
        "PaymentMethod",
        (
            "Bank transfer (automatic)",
            "Credit card (automatic)",
            "Electronic check",
            "Mailed check",
        ),
    ),
    Numeric("MonthlyCharges", float, 0.0, 10_000.0),
    Numeric("TotalCharges", float, 0.0, 1_000_000.0, nullable=True),
)

FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
CATEGORICAL_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES if isinstance(f, Categorical))
NUMERIC_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES if isinstance(f, Numeric))
CSV_COLUMNS: tuple[str, ...] = (ID_COLUMN, *FEATURE_NAMES, LABEL_COLUMN)
